//! End to end, an edge device with IAM Roles Anywhere: the operator started with
//! `--aws-credentials-source roles-anywhere` and a certificate mounted as files (the
//! shape of a cert-manager `kubernetes.io/tls` Secret) writes valid pull secrets with no
//! access key anywhere; a renewed certificate (a new key type, even) is used for the next
//! session with no restart; an expired one stops before AWS is asked, and the Secret in
//! place is kept.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use emulators::aws::RolesAnywhereConfig;
use emulators::device_pki::{self, DeviceCa, DeviceCert, DeviceSpec};
use serde_json::json;

use common::*;

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta-edge";
const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p-edge";
const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";

/// `tls.crt` and `tls.key` in a directory of the test's own, replaced the way the kubelet
/// updates a Secret volume (a new file renamed over the old one).
struct Mount(PathBuf);

impl Mount {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ra-e2e-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, device: &DeviceCert) {
        for (name, content) in [("tls.crt", &device.cert_pem), ("tls.key", &device.key_pem)] {
            let tmp = self.0.join(format!(".{name}.new"));
            std::fs::write(&tmp, content).unwrap();
            std::fs::rename(&tmp, self.0.join(name)).unwrap();
        }
    }

    fn options(&self) -> Options {
        let path = |f: &str| self.0.join(f).to_string_lossy().into_owned();
        Options {
            // The operator never sees a key: the only credential is the certificate.
            args: vec!["--aws-credentials-source".into(), "roles-anywhere".into()],
            env: vec![
                ("AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN".into(), ANCHOR.into()),
                ("AWS_ROLESANYWHERE_PROFILE_ARN".into(), PROFILE.into()),
                ("AWS_ROLESANYWHERE_ROLE_ARN".into(), ROLE.into()),
                ("AWS_ROLESANYWHERE_CERTIFICATE".into(), path("tls.crt")),
                ("AWS_ROLESANYWHERE_PRIVATE_KEY".into(), path("tls.key")),
            ],
            token_lifetime: Duration::from_secs(4),
            metrics: true,
            ..Options::default()
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `auth` of the registry entry in the pull secret.
fn secret_auth(env: &Env) -> Option<String> {
    let secret = env.secret("edge-apps", "ecr-pull")?;
    secret_auths(&secret).get(&registry(REGION)).cloned()
}

/// The operator-wide certificate's expiry as this binary's /metrics exports it.
async fn operator_certificate_expiry(env: &Env) -> Option<f64> {
    let series = "ecr_creds_refresher_certificate_expiry_timestamp_seconds{ecrpullsecret=\"\",source=\"operator\"}";
    env.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A certificate valid from a minute ago for `days`, to the second.
fn valid_for(spec: DeviceSpec<'static>, days: i64) -> DeviceSpec<'static> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    DeviceSpec {
        not_before: now - time::Duration::minutes(1),
        not_after: now + time::Duration::days(days),
        ..spec
    }
}

fn x509_header(env: &Env) -> Option<String> {
    let headers = env.aws.last_headers("rolesanywhere")?;
    Some(headers.get("x-amz-x509")?.to_str().ok()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_certificate_gives_pull_secrets_and_a_renewed_one_is_used_without_restart() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let ra = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    let mount = Mount::new("renew");
    let rsa_spec = valid_for(
        DeviceSpec::new(device_pki::RSA_2048_PKCS8, device_pki::RSA_2048_PKCS1, 501),
        30,
    );
    let rsa = root.issue(&rsa_spec).unwrap();
    mount.write(&rsa);
    let mut env = Env::emulators(mount.options()).await;
    env.aws.update_config(|c| {
        c.roles_anywhere = Some(ra.clone());
        // Sessions are renewed 5 minutes before they end: 303 s makes that 3 s from now.
        c.credentials_lifetime = Duration::from_secs(303);
    });
    env.namespace("edge-apps", &[]).await;
    env.start_operator().await;
    env.cr(
        "edge",
        json!({"secretName": "ecr-pull", "namespaces": ["edge-apps"], "refresh": {"minInterval": "1s"}}),
    );
    env.wait_ready("edge").await;
    let first = secret_auth(&env).expect("a pull secret for the registry");
    assert!(
        env.aws.issued_ecr_tokens().contains_key(&first),
        "a token ECR issued"
    );
    assert_eq!(
        ra.accepted_serials().first().map(String::as_str),
        Some("501")
    );
    assert_eq!(x509_header(&env), Some(B64.encode(&rsa.cert_der)));
    // The expiry alert's series follows the certificate the operator-wide source loaded.
    let rsa_expiry = rsa_spec.not_after.unix_timestamp() as f64;
    wait_until_async("the RSA certificate's expiry exported", WAIT, async || {
        operator_certificate_expiry(&env).await == Some(rsa_expiry)
    })
    .await;

    // cert-manager renews: new serial, and here a new key type too.
    let renewed_spec = valid_for(
        DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_SEC1, 502),
        60,
    );
    let renewed = root.issue(&renewed_spec).unwrap();
    mount.write(&renewed);
    wait_until("a session with the renewed certificate", WAIT, || {
        ra.accepted_serials().iter().any(|s| s == "502")
    })
    .await;
    assert_eq!(x509_header(&env), Some(B64.encode(&renewed.cert_der)));
    let renewed_expiry = renewed_spec.not_after.unix_timestamp() as f64;
    wait_until_async(
        "the renewed certificate's expiry exported",
        WAIT,
        async || operator_certificate_expiry(&env).await == Some(renewed_expiry),
    )
    .await;
    let after = ra.accepted_serials().len();
    wait_until("a pull secret from the new session", WAIT, || {
        secret_auth(&env)
            .is_some_and(|a| a != first && env.aws.issued_ecr_tokens().contains_key(&a))
            && ra.accepted_serials().len() > after
    })
    .await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_stops_before_aws_and_keeps_the_secret_in_place() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let ra = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    let mount = Mount::new("expired");
    mount.write(
        &root
            .issue(&DeviceSpec::new(
                device_pki::P256_PKCS8,
                device_pki::P256_PKCS8,
                601,
            ))
            .unwrap(),
    );
    let mut env = Env::emulators(mount.options()).await;
    env.aws.update_config(|c| {
        c.roles_anywhere = Some(ra.clone());
        c.credentials_lifetime = Duration::from_secs(303);
    });
    env.namespace("edge-apps", &[]).await;
    env.start_operator().await;
    env.cr(
        "edge",
        json!({"secretName": "ecr-pull", "namespaces": ["edge-apps"], "refresh": {"minInterval": "1s"}}),
    );
    env.wait_ready("edge").await;

    let now = time::OffsetDateTime::now_utc();
    let mut lapsed = DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_PKCS8, 602);
    lapsed.not_before = now - time::Duration::days(30);
    lapsed.not_after = now - time::Duration::hours(1);
    mount.write(&root.issue(&lapsed).unwrap());
    let cr = env
        .wait_condition("edge", "False", "CertificateExpired")
        .await;
    let message = ready_condition(&cr).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("certificate expired at"), "{message}");
    let kept = env
        .secret("edge-apps", "ecr-pull")
        .expect("the Secret is kept");
    env.settle(Duration::from_millis(1500)).await;
    assert_eq!(
        env.secret("edge-apps", "ecr-pull"),
        Some(kept),
        "kept byte for byte"
    );
    assert!(
        !ra.accepted_serials().iter().any(|s| s == "602"),
        "no session with an expired certificate"
    );
    assert!(
        !message.contains("PRIVATE KEY") && !message.contains(&device_pki::P256_PKCS8[40..70]),
        "{message}"
    );
    env.shutdown().await;
}
