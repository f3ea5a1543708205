//! Issue 16 ("Hardening II"), the findings at the operator's edges that need the operator
//! running: the admin ports under a header flood (N2), what the admission policy lets a
//! stolen token do (N3) and the registry endpoint in cleartext (N5). Each test is named
//! after its finding and failed before the fix. N8 (passwords in `Debug`) is pinned by
//! `n8_*` unit tests beside the types; the emulator's side of N3 by `n3_*` tests in
//! emulators/tests/k8s_admission.rs.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// N5: `ECR_REGISTRY_ENDPOINT_URL=http://` to a host other than loopback would send every
/// ECR password as Basic auth in cleartext. The binary refuses it at startup with one
/// line naming the variable (never the URL, which may hold a password), unless the
/// admin opts in; loopback stays allowed, as for `--token-file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n5_plain_http_registry_endpoint_is_refused_at_startup() {
    let (k8s, aws) = emulators(&[]).await;
    let launch = |name: &str, url: &str| {
        operator(name, k8s.url(), &aws)
            .verify_registries(true)
            .envs([("ECR_REGISTRY_ENDPOINT_URL", url)])
    };
    let remote = "http://AWS:n5-password-in-url@192.0.2.10:5000";

    let mut refused = launch("n5-refused", remote).spawn().unwrap();
    let status = refused.wait_exit(WAIT).await;
    let log = refused.log();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    // One line, whether it goes through the log or straight to stderr.
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("--allow-plain-http-registry"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains("ECR_REGISTRY_ENDPOINT_URL")
            && said[0].contains("--allow-plain-http-registry"),
        "{log}"
    );
    assert!(!log.contains("n5-password-in-url"), "{log}");

    let mut opted_in = launch("n5-opted-in", remote)
        .args(["--allow-plain-http-registry"])
        .spawn()
        .unwrap();
    opted_in.wait_ready(WAIT).await.unwrap();
    opted_in.terminate(WAIT).await.unwrap();

    for local in ["http://127.0.0.1:5000", "http://localhost:5000"] {
        let mut on_loopback = launch("n5-loopback", local).spawn().unwrap();
        on_loopback.wait_ready(WAIT).await.unwrap();
        on_loopback.terminate(WAIT).await.unwrap();
    }
}

/// The operator's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// One flooding connection from `source`: 400 KB of request head that never ends, as
/// fast as the server takes it; then held open until the server gives up on it.
async fn unterminated_headers(source: std::net::Ipv4Addr, target: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const FLOOD_BYTES: usize = 400_000;
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return;
    };
    if socket.bind((source, 0).into()).is_err() {
        return;
    }
    let Ok(mut stream) = socket.connect(target).await else {
        return;
    };
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: ".to_vec();
    head.resize(FLOOD_BYTES, b'a');
    let _ = stream.write_all(&head).await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
}

/// N2: 32 source addresses × 8 connections, each sending 400 KB of unterminated
/// headers, at the probe port and the metrics port at once, three waves. hyper's default
/// 400 KiB read buffer per connection took the release binary from 6.7 to 110 MiB. The
/// operator's peak RSS must stay under 32 MiB and `/healthz` answer 200 throughout.
/// Measured on the debug binary the tests build (`target/debug`), whose baseline is
/// above the release binary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n2_admin_flood_of_unterminated_headers_keeps_memory_and_probes() {
    const SOURCES: u8 = 32;
    const PER_SOURCE: usize = 8;
    const WAVES: usize = 3;
    const PEAK_LIMIT_KIB: u64 = 32 * 1024;
    let (k8s, aws) = emulators(&[]).await;
    let mut op = operator("n2-flood", k8s.url(), &aws)
        .rust_log("warn")
        .spawn()
        .unwrap();
    op.wait_ready(WAIT).await.unwrap();
    let metrics = op.metrics_addr.expect("metrics served");
    let before = peak_rss_kib(op.pid);

    for wave in 0..WAVES {
        let mut flood = tokio::task::JoinSet::new();
        for target in [op.probe_addr, metrics] {
            for s in 0..SOURCES {
                let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + s);
                for _ in 0..PER_SOURCE {
                    flood.spawn(unterminated_headers(source, target));
                }
            }
        }
        // The kubelet's probes while the flood runs.
        while !flood.is_empty() {
            let healthz = get(op.probe_addr, "/healthz").await;
            assert!(
                healthz.as_ref().is_ok_and(|a| a.status == 200),
                "wave {wave}: /healthz during the flood: {healthz:?}"
            );
            tokio::select! {
                _ = flood.join_next() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
    let healthz = get(op.probe_addr, "/healthz").await.unwrap();
    assert_eq!(healthz.status, 200, "after the flood");
    let scrape = get(metrics, "/metrics").await.unwrap();
    assert_eq!(scrape.status, 200, "metrics after the flood");
    let peak = peak_rss_kib(op.pid);
    println!("n2: peak RSS (VmHWM) {before} KiB before the flood, {peak} KiB after");
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak RSS {peak} KiB (before the flood {before} KiB); limit {PEAK_LIMIT_KIB} KiB"
    );
    op.terminate(WAIT).await.unwrap();
}

/// N3: under the tightened admission policy (the emulator enforces
/// deploy/admission-policy.yaml for the operator's identity in every test), everything the
/// operator really does passes: adopting an ECR-only pull secret, merging into a shared
/// one, its finalizer in and out, status, ServiceAccounts, cleanup. And with the
/// operator's own token, the reviewer's attacks answer 403: label-and-rewrite of a
/// kube-system pull secret, deleting a labelled Secret of another type, re-aiming a CR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n3_admission_policy_passes_the_operator_and_bounds_its_stolen_token() {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde_json::json;

    let mut env = Env::emulators(Options::default()).await;
    for ns in ["adopt", "shared", "kube-system"] {
        env.namespace(ns, &[]).await;
    }
    let ecr_only = format!(
        r#"{{"auths":{{"https://{}/":{{"auth":"QVdTOm9sZA=="}}}}}}"#,
        registry(REGION)
    );
    env.foreign_secret(
        "adopt",
        "ecr-pull",
        DOCKERCONFIG_TYPE,
        [(DOCKERCONFIG_KEY, ecr_only.clone())].into(),
    );
    env.foreign_secret(
        "shared",
        "shared-pull",
        DOCKERCONFIG_TYPE,
        [(
            DOCKERCONFIG_KEY,
            r#"{"auths":{"docker.io":{"auth":"eDp5"}}}"#.to_string(),
        )]
        .into(),
    );
    env.start_operator().await;
    env.cr(
        "adopter",
        json!({"secretName": "ecr-pull", "namespaces": ["adopt"], "registries": [registry(REGION)],
               "adoptExisting": true, "deletionPolicy": "Delete"}),
    );
    env.cr(
        "merger",
        json!({"secretName": "shared-pull", "namespaces": ["shared"],
               "registries": [registry(REGION)], "secretPolicy": "Merge"}),
    );
    env.wait_ready("adopter").await;
    env.wait_ready("merger").await;
    let adopted = env.wait_secret("adopt", "ecr-pull").await;
    assert_eq!(
        adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "ecr-creds-refresher"
    );
    wait_until("the cleanup finalizer is on", WAIT, || {
        env.get_cr("adopter")
            .is_some_and(|cr| cr["metadata"]["finalizers"] == json!(["ecr.creds.dev/cleanup"]))
    })
    .await;
    env.k8s.delete(CR_RESOURCE, None, "adopter").unwrap();
    wait_until("cleanup done and the CR released", WAIT, || {
        env.get_cr("adopter").is_none() && env.secret("adopt", "ecr-pull").is_none()
    })
    .await;
    assert_eq!(
        env.k8s.admission_denials(),
        vec![],
        "the operator was denied"
    );
    env.stop_operator().await;

    // The operator's token in an attacker's hands (the emulator runs requests as it).
    let addr = env.k8s.addr();
    env.foreign_secret(
        "kube-system",
        "registry-creds",
        DOCKERCONFIG_TYPE,
        [(DOCKERCONFIG_KEY, ecr_only), ("other", "keep".to_string())].into(),
    );
    let merge = "application/merge-patch+json";
    let labelled = json!({"app.kubernetes.io/managed-by": "ecr-creds-refresher"});
    let rewrite = json!({"metadata": {"labels": labelled,
                                      "annotations": {"attacker": "x"},
                                      "finalizers": ["attacker/hold"]},
                         "data": {DOCKERCONFIG_KEY: B64.encode("{}"), "other": B64.encode("x"),
                                  "added": B64.encode("x")}});
    let path = "/api/v1/namespaces/kube-system/secrets/registry-creds";
    let (code, body) = http(addr, "PATCH", path, Some((merge, &rewrite))).await;
    assert_eq!(code, 403, "label and rewrite: {body}");
    let (code, body) = http(addr, "DELETE", path, None).await;
    assert_eq!(code, 403, "delete an unlabelled Secret: {body}");
    env.k8s
        .apply(
            "secrets",
            json!({"metadata": {"name": "tls", "namespace": "kube-system", "labels": labelled},
                   "type": "Opaque", "data": {"k": B64.encode("v")}}),
        )
        .unwrap();
    let (code, body) = http(
        addr,
        "DELETE",
        "/api/v1/namespaces/kube-system/secrets/tls",
        None,
    )
    .await;
    assert_eq!(code, 403, "delete a labelled Opaque Secret: {body}");
    let (code, body) = http(
        addr,
        "PATCH",
        "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets/merger",
        Some((merge, &json!({"spec": {"namespaces": ["kube-system"]}}))),
    )
    .await;
    assert_eq!(code, 403, "re-aim a CR: {body}");
    assert_eq!(env.k8s.admission_denials().len(), 4);
    assert_eq!(
        env.get_cr("merger").unwrap()["spec"]["namespaces"],
        json!(["shared"])
    );
    env.shutdown().await;
}
