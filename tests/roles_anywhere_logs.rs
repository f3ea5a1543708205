//! The device's private key, and the session it buys, reach no log line, metric, Event or
//! CR status. The operator runs in-process with `--aws-credentials-source roles-anywhere`,
//! logging at TRACE (its targets and its dependencies'), as text and JSON, through a
//! session, a renewal, and a key that does not match its certificate (the error path that
//! handles the key).

mod common;

use std::time::Duration;

use common::{
    apply_cr, apply_namespace, get, ready_condition, start_operator, wait_until, LogBuffer, Options,
};
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, RolesAnywhereConfig};
use emulators::device_pki::{self, DeviceCa, DeviceCert, DeviceSpec};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta-logs";
const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p-logs";
const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";

fn capture_logs() -> LogBuffer {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(logs.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(logs.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    logs
}

fn write(dir: &std::path::Path, device: &DeviceCert, key_pem: &str) {
    std::fs::write(dir.join("tls.crt"), &device.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), key_pem).unwrap();
}

fn ready_message(k8s: &K8sEmulator) -> Option<(String, String)> {
    let cr = k8s.get("ecrpullsecrets", None, "edge")?;
    let c = ready_condition(&cr)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["message"].as_str()?.to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_device_key_or_session_secret_reaches_logs_metrics_events_or_status() {
    let logs = capture_logs();
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let ra = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    let k8s = K8sEmulator::start(EmulatorConfig::default()).await.unwrap();
    let aws = AwsEmulator::start(AwsEmulatorConfig {
        roles_anywhere: Some(ra.clone()),
        credentials_lifetime: Duration::from_secs(302),
        token_lifetime: Duration::from_secs(4),
        ..AwsEmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("ra-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rsa = root
        .issue(&DeviceSpec::new(
            device_pki::RSA_2048_PKCS8,
            device_pki::RSA_2048_PKCS1,
            801,
        ))
        .unwrap();
    write(&dir, &rsa, device_pki::RSA_2048_PKCS1);
    apply_namespace(&k8s, "edge-apps");
    apply_namespace(&k8s, "ops");
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let options = Options {
        metrics: true,
        args: vec!["--aws-credentials-source".into(), "roles-anywhere".into()],
        env: vec![
            ("AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN".into(), ANCHOR.into()),
            ("AWS_ROLESANYWHERE_PROFILE_ARN".into(), PROFILE.into()),
            ("AWS_ROLESANYWHERE_ROLE_ARN".into(), ROLE.into()),
            ("AWS_ROLESANYWHERE_CERTIFICATE".into(), path("tls.crt")),
            ("AWS_ROLESANYWHERE_PRIVATE_KEY".into(), path("tls.key")),
        ],
        ..Options::default()
    };
    let op = start_operator(&k8s, &aws, &options).await;
    apply_cr(
        &k8s,
        "edge",
        json!({"secretName": "pull", "namespaces": ["edge-apps"], "refresh": {"minInterval": "1s"}}),
    );
    wait_until("Ready=True", Duration::from_secs(20), || {
        ready_message(&k8s).is_some_and(|(s, _)| s == "True")
    })
    .await;
    // A renewal after the 2 s the session is fresh for, then the P-256 SEC1 key written
    // under the RSA certificate: the loader meets both keys.
    wait_until("a second session", Duration::from_secs(20), || {
        ra.accepted_serials().len() >= 2
    })
    .await;
    write(&dir, &rsa, device_pki::P256_SEC1);
    wait_until("the mismatch in status", Duration::from_secs(20), || {
        ready_message(&k8s).is_some_and(|(s, m)| s == "False" && m.contains("does not match"))
    })
    .await;
    let metrics = format!(
        "{:?}",
        get(op.metrics_addr.expect("metrics served"), "/metrics")
            .await
            .unwrap()
    );
    op.shutdown(Duration::from_secs(5), std::future::pending())
        .await;
    let _ = std::fs::remove_dir_all(&dir);

    let mut places = vec![("logs", logs.text()), ("metrics", metrics)];
    let crs = k8s.list("ecrpullsecrets", None);
    places.push(("CR status", format!("{crs:?}")));
    places.push(("events", format!("{:?}", k8s.list("events", None))));
    assert!(
        places[0].1.contains("rolesanywhere"),
        "the logs saw the CreateSession calls"
    );
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (name, pem) in [
        ("RSA key", device_pki::RSA_2048_PKCS1),
        ("P-256 key", device_pki::P256_SEC1),
    ] {
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            secrets.push((name.to_string(), line[..line.len().min(24)].to_string()));
        }
    }
    // Every secret key and session token the emulator hands out starts so.
    secrets.push(("a session's secret key".into(), "emulated-secret-".into()));
    secrets.push(("a session token".into(), "emulated-session-token-".into()));
    for (place, text) in &places {
        for (what, value) in &secrets {
            assert!(!text.contains(value.as_str()), "{what} found in {place}");
        }
        assert!(!text.contains("PRIVATE KEY"), "a PEM key header in {place}");
    }
}
