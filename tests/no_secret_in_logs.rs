//! No secret reaches a log line, a metric, an Event or a CR status.
//!
//! The real operator runs in-process, logging at TRACE (its own targets and its
//! dependencies') into buffers, as text and as JSON, through success, AWS failures,
//! AssumeRole, a Secret conflict, credentials from a Kubernetes Secret (per CR and
//! operator-wide through AWS_CREDENTIALS_SECRET_NAME), and bad credentials Secrets. Then
//! every secret value the emulators handed out or were given is searched for in the logs,
//! in `/metrics`, in every Event and in every CR status (each kept before its CR is
//! deleted, and counted): ECR tokens (the base64 `auth` and
//! the decoded password), AWS secret access keys, STS session tokens, the Kubernetes
//! bearer token, and the Authorization header values the operator sent.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{
    apply_cr, apply_namespace, get, grant_roles, ready_condition, secret_auths, start_operator,
    wait_until, LogBuffer, Options, SECRET_ACCESS_KEY,
};
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, Fault};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

const K8S_TOKEN: &str = "k8s-bearer-eyJhbGciOiJSUzI1NiIsImtpZCI6InNvYWsifQ.do-not-log";
const OPS_SECRET_KEY: &str = "ops/Secret+Key/from-a-kubernetes-secret-0001";
const OPS_SESSION_TOKEN: &str = "ops-session-token-IQoJb3JpZ2luX2VjEOr-do-not-log";
const BAD_SECRET_KEY: &str = "bad/Secret+Key/in-a-broken-secret-0002";

// === log capture ===

/// Installs the process-wide subscriber: everything at TRACE, as text and as JSON.
fn capture_logs() -> (LogBuffer, LogBuffer) {
    let (text, json) = (LogBuffer::default(), LogBuffer::default());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(text.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(json.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    (text, json)
}

// === helpers ===

fn creds_secret(k8s: &K8sEmulator, name: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(STANDARD.encode(v))))
        .collect();
    k8s.apply(
        "secrets",
        json!({"metadata": {"name": name, "namespace": "ops"}, "type": "Opaque", "data": data}),
    )
    .unwrap();
}

/// The Ready condition of a CR: (status, reason).
fn ready(k8s: &K8sEmulator, name: &str) -> Option<(String, String)> {
    let cr = k8s.get("ecrpullsecrets", None, name)?;
    let c = ready_condition(&cr)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

async fn wait_ready(k8s: &K8sEmulator, name: &str, want: &str) -> String {
    wait_until(
        &format!("{name} Ready={want}"),
        Duration::from_secs(20),
        || ready(k8s, name).is_some_and(|(s, _)| s == want),
    )
    .await;
    ready(k8s, name).map(|(_, r)| r).unwrap_or_default()
}

/// Every CR's last status, kept before the CR is deleted (with no finalizer it is gone at
/// once), so that every status is searched.
#[derive(Default)]
struct Statuses(std::collections::BTreeMap<String, Value>);

impl Statuses {
    fn keep(&mut self, k8s: &K8sEmulator, name: &str) {
        let cr = k8s
            .get("ecrpullsecrets", None, name)
            .expect("the CR exists");
        assert!(
            ready_condition(&cr).is_some(),
            "{name} has no Ready condition"
        );
        self.0.insert(name.to_string(), cr["status"].clone());
    }

    /// Keeps the status, then deletes the CR.
    fn keep_and_delete(&mut self, k8s: &K8sEmulator, name: &str) {
        self.keep(k8s, name);
        k8s.delete("ecrpullsecrets", None, name).unwrap();
    }
}

/// The whole answer to a GET, headers included, as text to search.
async fn answer(addr: Option<std::net::SocketAddr>, path: &str) -> String {
    let answer = get(addr.expect("served"), path).await.unwrap();
    format!("{answer:?}")
}

/// Authorization and security-token headers the operator sent to an AWS endpoint.
fn sent_headers(aws: &AwsEmulator, endpoint: &str, into: &mut Vec<(String, String)>) {
    if let Some(h) = aws.last_headers(endpoint) {
        for name in ["authorization", "x-amz-security-token"] {
            if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
                into.push((format!("{endpoint} {name} header"), v.to_string()));
                if let Some(sig) = v.split("Signature=").nth(1) {
                    into.push((format!("{endpoint} signature"), sig.to_string()));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_metrics_events_or_status() {
    let (text_logs, json_logs) = capture_logs();
    let k8s = K8sEmulator::start(EmulatorConfig {
        token: Some(K8S_TOKEN.to_string()),
        ..Default::default()
    })
    .await
    .unwrap();
    let aws = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    // The temporary keys the ops Secret holds, as STS would have issued them.
    aws.add_session_key("AKIAOPSFROMSECRET001", OPS_SECRET_KEY, OPS_SESSION_TOKEN);
    let dir = std::env::temp_dir().join(format!("no-secret-in-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{K8S_TOKEN}\n")).unwrap();
    let token_path = token_file.to_str().unwrap().to_string();
    for n in ["app-1", "app-2", "app-3", "app-4", "app-5", "app-6", "ops"] {
        apply_namespace(&k8s, n);
    }
    let mut sent = Vec::new();
    let mut statuses = Statuses::default();

    // --- Operator 1: static keys from the environment.
    let options = Options {
        metrics: true,
        args: vec!["--token-file".into(), token_path.clone()],
        ..Options::default()
    };
    let op = start_operator(&k8s, &aws, &options).await;

    // Success.
    apply_cr(
        &k8s,
        "ok",
        json!({"secretName": "pull", "namespaces": ["app-1", "app-2"]}),
    );
    assert_eq!(wait_ready(&k8s, "ok", "True").await, "TokenFetched");
    sent_headers(&aws, "ecr", &mut sent);

    // AssumeRole: an STS session (secret key and session token) signs the ECR call.
    grant_roles(
        &k8s,
        "ops",
        &[("assumed", "arn:aws:iam::123456789012:role/puller")],
    );
    apply_cr(
        &k8s,
        "assumed",
        json!({"secretName": "pull-role", "namespaces": ["app-4"],
               "aws": {"roleArn": "arn:aws:iam::123456789012:role/puller", "externalId": "ext-1"}}),
    );
    wait_ready(&k8s, "assumed", "True").await;
    assert!(aws.calls().sts_assume_role >= 1);
    sent_headers(&aws, "sts", &mut sent);
    sent_headers(&aws, "ecr", &mut sent);

    // AWS failures: access denied, then throttling past the retries.
    aws.set_fault(Fault::AccessDenied, None);
    apply_cr(
        &k8s,
        "denied",
        json!({"secretName": "pull", "namespaces": ["app-3"], "region": "eu-west-1"}),
    );
    wait_ready(&k8s, "denied", "False").await;
    aws.set_fault(Fault::Throttle, None);
    apply_cr(
        &k8s,
        "throttled",
        json!({"secretName": "pull", "namespaces": ["app-3"], "region": "ap-south-1"}),
    );
    wait_ready(&k8s, "throttled", "False").await;
    aws.clear_fault();
    statuses.keep_and_delete(&k8s, "denied");
    statuses.keep_and_delete(&k8s, "throttled");

    // Conflict: a Secret of that name that is not ours.
    k8s.apply(
        "secrets",
        json!({"metadata": {"name": "taken", "namespace": "app-3"}, "type": "Opaque",
               "data": {"k": STANDARD.encode("foreign")}}),
    )
    .unwrap();
    apply_cr(
        &k8s,
        "conflict",
        json!({"secretName": "taken", "namespaces": ["app-3"]}),
    );
    wait_ready(&k8s, "conflict", "False").await;

    // Credentials from a Kubernetes Secret, per CR; then a broken one.
    creds_secret(
        &k8s,
        "aws-creds",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAOPSFROMSECRET001"),
            ("AWS_SECRET_ACCESS_KEY", OPS_SECRET_KEY),
            ("AWS_SESSION_TOKEN", OPS_SESSION_TOKEN),
        ],
    );
    apply_cr(
        &k8s,
        "per-cr-secret",
        json!({"secretName": "pull-ops", "namespaces": ["app-5"], "region": "us-east-2",
               "aws": {"credentialsSecretRef": {"name": "aws-creds", "namespace": "ops"}}}),
    );
    wait_ready(&k8s, "per-cr-secret", "True").await;
    sent_headers(&aws, "ecr", &mut sent);
    creds_secret(
        &k8s,
        "aws-creds-bad",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIABROKENSECRET002"),
            ("aws_secret_access_key", BAD_SECRET_KEY),
        ],
    );
    apply_cr(
        &k8s,
        "bad-secret",
        json!({"secretName": "pull-bad", "namespaces": ["app-5"], "region": "us-west-1",
               "aws": {"credentialsSecretRef": {"name": "aws-creds-bad", "namespace": "ops"}}}),
    );
    wait_ready(&k8s, "bad-secret", "False").await;

    let metrics_1 = answer(op.metrics_addr, "/metrics").await;
    let probes_1 = answer(op.probe_addr, "/readyz").await;
    op.shutdown(Duration::from_secs(5), std::future::pending())
        .await;

    // --- Operator 2: credentials from AWS_CREDENTIALS_SECRET_NAME/NAMESPACE.
    for name in ["ok", "assumed", "conflict", "per-cr-secret", "bad-secret"] {
        statuses.keep_and_delete(&k8s, name);
    }
    let options = Options {
        env: vec![
            ("AWS_CREDENTIALS_SECRET_NAME".into(), "aws-creds".into()),
            ("AWS_CREDENTIALS_SECRET_NAMESPACE".into(), "ops".into()),
        ],
        ..options
    };
    let op = start_operator(&k8s, &aws, &options).await;
    apply_cr(
        &k8s,
        "global-secret",
        json!({"secretName": "pull-global", "namespaces": ["app-6"], "region": "ca-central-1"}),
    );
    wait_ready(&k8s, "global-secret", "True").await;
    sent_headers(&aws, "ecr", &mut sent);
    // The operator-wide Secret goes bad: a new region needs a fetch with it.
    creds_secret(
        &k8s,
        "aws-creds",
        &[("AWS_SECRET_ACCESS_KEY", BAD_SECRET_KEY)],
    );
    apply_cr(
        &k8s,
        "global-bad",
        json!({"secretName": "pull-global", "namespaces": ["app-6"], "region": "sa-east-1"}),
    );
    wait_ready(&k8s, "global-bad", "False").await;
    let metrics_2 = answer(op.metrics_addr, "/metrics").await;
    let probes_2 = answer(op.probe_addr, "/healthz").await;
    op.shutdown(Duration::from_secs(5), std::future::pending())
        .await;

    // --- Every secret value handed out or given.
    let mut secrets: Vec<(String, String)> = vec![
        ("kubernetes bearer token".into(), K8S_TOKEN.into()),
        (
            "kubernetes Authorization header".into(),
            format!("Bearer {K8S_TOKEN}"),
        ),
        ("static secret access key".into(), SECRET_ACCESS_KEY.into()),
        ("secret key from a Secret".into(), OPS_SECRET_KEY.into()),
        (
            "session token from a Secret".into(),
            OPS_SESSION_TOKEN.into(),
        ),
        (
            "secret key from a broken Secret".into(),
            BAD_SECRET_KEY.into(),
        ),
    ];
    let issued = aws.issued_ecr_tokens();
    assert!(issued.len() >= 3, "ECR issued only {} tokens", issued.len());
    for auth in issued.keys() {
        secrets.push(("ECR authorizationToken".into(), auth.clone()));
        let decoded = String::from_utf8(STANDARD.decode(auth).unwrap()).unwrap();
        let password = decoded.strip_prefix("AWS:").unwrap().to_string();
        secrets.push(("ECR password".into(), password));
    }
    for n in 1..=aws.calls().sts_assume_role {
        secrets.push((
            "STS secret access key".into(),
            format!("emulated-secret-{n}"),
        ));
        secrets.push((
            "STS session token".into(),
            format!("emulated-session-token-{n}"),
        ));
    }
    assert!(sent.len() >= 4, "captured only {} AWS headers", sent.len());
    secrets.extend(sent);
    // The Secrets really hold what ECR issued: the values searched for are the live ones.
    let written = k8s.get("secrets", Some("app-1"), "pull").unwrap();
    let auths = secret_auths(&written);
    assert!(auths.values().all(|a| issued.contains_key(a)) && !auths.is_empty());

    // --- Everywhere they must not be.
    let mut places: Vec<(String, String)> = vec![
        ("text log".into(), text_logs.text()),
        ("JSON log".into(), json_logs.text()),
        ("/metrics (first operator)".into(), metrics_1),
        ("/metrics (second operator)".into(), metrics_2),
        ("probes".into(), format!("{probes_1}\n{probes_2}")),
    ];
    for resource in ["events", "events.events.k8s.io"] {
        for e in k8s.list(resource, None) {
            places.push((
                format!("{resource} {}", e["metadata"]["name"]),
                e.to_string(),
            ));
        }
    }
    for c in k8s.list("ecrpullsecrets", None) {
        statuses.keep(&k8s, c["metadata"]["name"].as_str().unwrap());
    }
    let searched: Vec<&String> = statuses.0.keys().collect();
    assert_eq!(
        searched,
        [
            "assumed",
            "bad-secret",
            "conflict",
            "denied",
            "global-bad",
            "global-secret",
            "ok",
            "per-cr-secret",
            "throttled"
        ],
        "the status of every CR applied is searched"
    );
    for (name, status) in &statuses.0 {
        places.push((format!("status of {name}"), status.to_string()));
    }
    // The scenario really went through every path, and was logged.
    let text = &places[0].1;
    assert!(
        text.lines().count() > 200,
        "only {} log lines",
        text.lines().count()
    );
    assert!(text.contains("TRACE") && text.contains("DEBUG"));
    for evidence in ["AccessDenied", "Throttling", "taken", "aws-creds-bad"] {
        assert!(
            places.iter().any(|(_, p)| p.contains(evidence)),
            "nothing anywhere mentions {evidence}: the scenario did not run that path"
        );
    }
    assert!(
        places.iter().any(|(w, _)| w.starts_with("events")),
        "no Events written"
    );

    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        for (place, content) in &places {
            if content.contains(secret.as_str()) {
                leaks.push(format!("{what} found in {place}"));
            }
        }
    }
    leaks.sort();
    leaks.dedup();
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
