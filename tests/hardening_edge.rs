//! Issue 16 ("Hardening II"), the findings at the operator's edges: the admin ports under
//! a header flood (N2), what the admission policy lets a stolen token do (N3), the
//! registry endpoint in cleartext (N5) and passwords in `Debug` (N8). Each test is named
//! after its finding and failed before the fix.

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
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("ecr-creds-refresher:"))
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
