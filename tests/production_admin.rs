//! The shipped binary's operational surface, as a kubelet, Prometheus and a CronJob see
//! it: probes, the metrics exposition, `--once` exit codes, and exit 2 with a message a
//! user can act on when the API server cannot be trusted, refuses the token or is down.

mod common;

use std::time::Duration;

use common::*;
use emulators::k8s::{EmulatorConfig, FaultConfig, K8sEmulator};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn spec(namespaces: &[&str]) -> serde_json::Value {
    json!({"secretName": "ecr-pull", "namespaces": namespaces, "registries": [registry(REGION)]})
}

/// The password inside an ECR `authorizationToken` (base64 of `AWS:<password>`).
fn token_password(token: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("the emulator issues base64");
    let text = String::from_utf8(raw).expect("the emulator issues text");
    text.strip_prefix("AWS:").expect("user AWS").to_owned()
}

/// The value of the first sample line starting with `series` (name plus labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_and_metrics_expose_every_series_after_a_reconcile() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    apply_cr(&k8s, "main", spec(&["app-*"]));
    let mut op = operator("pod-a", k8s.url(), &aws).spawn().unwrap();

    wait_until("CR Ready", WAIT, || {
        k8s.get("ecrpullsecrets", None, "main")
            .is_some_and(|cr| is_ready(&cr))
    })
    .await;

    let healthz = get(op.probe_addr, "/healthz").await.unwrap();
    assert_eq!(healthz.status, 200, "{}", healthz.text());
    // Ready once the caches synced (they did: the CR was reconciled from them; the
    // readiness flag is set by its own task, a moment later at most).
    op.wait_ready(POLL * 40).await.unwrap();

    let metrics = get(op.metrics_addr.expect("metrics served"), "/metrics")
        .await
        .unwrap();
    let m = metrics.text();
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let p = "ecr_creds_refresher_";
    assert_eq!(
        sample(&m, &format!("{p}token_fetches_total{{result=\"success\"}}")),
        Some(1.0),
        "one token for one registry group:\n{m}"
    );
    let expiry = sample(&m, &format!("{p}token_expiry_timestamp_seconds{{"))
        .unwrap_or_else(|| panic!("no token expiry:\n{m}"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    // The fake ECR issues 12 h tokens.
    assert!(
        (now + 11.0 * 3600.0..now + 13.0 * 3600.0).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    assert!(
        sample(
            &m,
            &format!("{p}reconcile_duration_seconds_bucket{{result=\"success\",le=\"+Inf\"}}")
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(sample(&m, &format!("{p}queue_depth")).is_some(), "{m}");
    assert_eq!(
        sample(&m, &format!("{p}secret_writes_total{{op=\"create\"}}")),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            &format!("{p}kube_api_requests_total{{verb=\"list\",code=\"200\"}}")
        )
        .is_some_and(|n| n >= 4.0),
        "the four caches listed:\n{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with(&format!(
            "{p}kube_api_requests_total{{verb=\"patch\",code=\""
        ))) || m.lines().any(|l| l.starts_with(&format!(
            "{p}kube_api_requests_total{{verb=\"create\",code=\"201\"}}"
        ))),
        "writes counted by verb and code:\n{m}"
    );
    // Without --leader-elect an instance is always the writer.
    assert_eq!(sample(&m, &format!("{p}is_leader")), Some(1.0), "{m}");
    // No secret material in the exposition.
    assert!(!m.contains(SECRET_ACCESS_KEY));
    let issued = aws.issued_ecr_tokens();
    assert!(!issued.is_empty(), "the reconcile fetched a token");
    for token in issued.keys() {
        let password = &token_password(token);
        assert!(!m.contains(token) && !m.contains(password.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_caches_sync_while_healthz_is_200() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    // The namespace list answers after 2 s: the caches cannot sync before.
    k8s.faults().set(FaultConfig {
        latency_ms: 2000,
        verbs: vec!["list".into()],
        resources: vec!["namespaces".into()],
        ..FaultConfig::default()
    });
    let mut op = operator("slow-sync", k8s.url(), &aws).spawn().unwrap();
    // The first answer, as soon as the probes listen (startup binds them before the
    // caches list).
    let first = poll(WAIT, POLL, async || {
        get(op.probe_addr, "/readyz").await.ok()
    })
    .await
    .expect("probes never listened");
    assert_eq!(first.status, 503, "{first:?}");
    assert!(first.text().contains("caches"), "{first:?}");
    assert_eq!(get(op.probe_addr, "/healthz").await.unwrap().status, 200);

    // From just before the process started.
    let ready_after = op.wait_ready(WAIT).await.unwrap();
    assert!(
        ready_after >= Duration::from_secs(2),
        "ready before the namespace list answered: {ready_after:?}"
    );
}

async fn run_once(k8s: &K8sEmulator, aws: &emulators::aws::AwsEmulator) -> (Option<i32>, String) {
    let mut op = operator("once", k8s.url(), aws)
        .args(["--once"])
        .spawn()
        .unwrap();
    let status = op
        .wait_exit(WAIT)
        .await
        .unwrap_or_else(|| panic!("--once did not exit:\n{}", op.log()));
    (status.code(), op.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_zero_when_every_cr_is_ready() {
    let (k8s, aws) = emulators(&["app-1", "app-2"]).await;
    apply_cr(&k8s, "main", spec(&["app-*"]));
    let (code, err) = run_once(&k8s, &aws).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(k8s.get("secrets", Some("app-2"), "ecr-pull").is_some());
    assert!(is_ready(&k8s.get("ecrpullsecrets", None, "main").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_non_zero_when_a_cr_names_a_missing_namespace() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    apply_cr(&k8s, "good", spec(&["app-1"]));
    apply_cr(&k8s, "bad", spec(&["does-not-exist"]));
    let (code, err) = run_once(&k8s, &aws).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("bad"), "names the failed CR:\n{err}");
    // The healthy CR was still served.
    assert!(k8s.get("secrets", Some("app-1"), "ecr-pull").is_some());
}

/// Starts the binary against `api_server` and expects exit code 2 within a few seconds.
async fn exits_2(
    api_server: String,
    aws: &emulators::aws::AwsEmulator,
    args: Vec<String>,
) -> String {
    let mut op = operator("bad-config", api_server, aws)
        .args(args)
        .spawn()
        .unwrap();
    let status = op
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("did not exit:\n{}", op.log()));
    let err = op.log();
    assert_eq!(status.code(), Some(2), "{err}");
    err
}

fn write_temp(name: &str, content: &str) -> std::path::PathBuf {
    let port = free_port().unwrap().port();
    let p = std::env::temp_dir().join(format!("ecr-creds-refresher-{name}-{port}"));
    std::fs::write(&p, content).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_signed_by_another_ca_exits_2_naming_the_certificate() {
    let tls = EmulatorConfig {
        tls: true,
        ..EmulatorConfig::default()
    };
    let k8s = K8sEmulator::start(tls.clone()).await.unwrap();
    let other = K8sEmulator::start(tls).await.unwrap();
    let (_, aws) = emulators(&[]).await;
    let wrong_ca = write_temp("wrong-ca", &other.ca_pem().unwrap());
    let err = exits_2(
        k8s.url(),
        &aws,
        vec!["--ca-file".into(), wrong_ca.display().to_string()],
    )
    .await;
    std::fs::remove_file(&wrong_ca).unwrap();
    println!("{err}");
    assert!(err.contains(&k8s.url()), "names the server:\n{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "names the certificate problem:\n{err}"
    );

    // The right CA works (so the failure above was the CA, nothing else).
    let right_ca = write_temp("right-ca", &k8s.ca_pem().unwrap());
    let mut op = operator("good-ca", k8s.url(), &aws)
        .args(["--ca-file", &right_ca.display().to_string(), "--once"])
        .spawn()
        .unwrap();
    let status = op.wait_exit(WAIT).await.unwrap();
    std::fs::remove_file(&right_ca).unwrap();
    assert_eq!(status.code(), Some(0), "{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_exits_2_saying_so_without_printing_it() {
    let k8s = K8sEmulator::start(EmulatorConfig {
        tls: true,
        token: Some("the-right-token".into()),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let (_, aws) = emulators(&[]).await;
    let ca = write_temp("ca", &k8s.ca_pem().unwrap());
    let token = write_temp("token", "a-wrong-token\n");
    let err = exits_2(
        k8s.url(),
        &aws,
        vec![
            "--ca-file".into(),
            ca.display().to_string(),
            "--token-file".into(),
            token.display().to_string(),
        ],
    )
    .await;
    std::fs::remove_file(&ca).unwrap();
    std::fs::remove_file(&token).unwrap();
    println!("{err}");
    assert!(err.contains("token was refused"), "{err}");
    assert!(!err.contains("a-wrong-token"), "the token leaked:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_exits_2_naming_it() {
    let (_, aws) = emulators(&[]).await;
    let url = format!("http://{}", free_port().unwrap());
    let err = exits_2(url.clone(), &aws, vec![]).await;
    println!("{err}");
    assert!(err.contains(&url), "names the server:\n{err}");
}
