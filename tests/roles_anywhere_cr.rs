//! End to end, IAM Roles Anywhere per CR (`spec.aws.rolesAnywhere`, issue 20): a
//! cert-manager-shaped `kubernetes.io/tls` Secret, made here with a CA of the test's own,
//! gives valid pull secrets with no access key (RSA and ECDSA devices); a renewed
//! certificate signs the very next session, with no restart; an expired one is refused
//! before AWS is asked and the Secrets in place are kept; the Secret serves only CRs it
//! grants, and an ungranted CR learns nothing of it; a key that does not match its
//! certificate is `CertificateInvalid` and no byte of it reaches a log, status or event.
//! The operator runs in-process, its logs captured at TRACE for the whole binary.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use emulators::aws::RolesAnywhereConfig;
use emulators::device_pki::{self, DeviceCa, DeviceCert, DeviceSpec};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

use common::*;

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta-edge";
const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p-edge";
const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";
const CROSS_ACCOUNT_ROLE: &str = "arn:aws:iam::123456789012:role/cross-account-pull";
const GRANT: &str = "ecr.creds.dev/allowed-ecrpullsecrets";
/// Where the device certificates live: not the operator's namespace, so a grant is needed.
const CERTS: &str = "edge-certs";

// === log capture, shared by every test of this binary ===

/// Everything the operator (and the HTTP stacks under it) logs, at TRACE, text and JSON.
/// The emulators are left out: the Kubernetes emulator is the API server, which holds
/// the Secret, and its logs are not the operator's.
fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let filter = tracing_subscriber::EnvFilter::new("trace,emulators=off");
        let subscriber = tracing_subscriber::registry()
            .with(filter)
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
    })
}

// === helpers ===

/// Emulators that know the trust anchor of `root`, and a running operator.
async fn edge_env(root: &DeviceCa) -> (Env, RolesAnywhereConfig) {
    logs();
    let mut ra = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    ra.role_arns.push(CROSS_ACCOUNT_ROLE.into());
    // Tokens of 4 s, refreshed every 2 s: each refresh is a chance for a new session.
    let mut env = Env::emulators(Options {
        token_lifetime: Duration::from_secs(4),
        metrics: true,
        ..Options::default()
    })
    .await;
    env.aws
        .update_config(|c| c.roles_anywhere = Some(ra.clone()));
    for ns in ["edge-apps", CERTS, OPERATOR_NAMESPACE] {
        env.namespace(ns, &[]).await;
    }
    env.start_operator().await;
    (env, ra)
}

/// A `kubernetes.io/tls` Secret as cert-manager writes it (`tls.crt` leaf then chain,
/// `tls.key`, `ca.crt`), granting the CRs `granted` names (none: no grant annotation).
fn tls_secret(env: &Env, name: &str, device: &DeviceCert, ca: &DeviceCa, granted: Option<&str>) {
    let annotations = match granted {
        Some(crs) => json!({GRANT: crs}),
        None => json!({}),
    };
    env.k8s
        .apply(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                   "metadata": {"name": name, "namespace": CERTS, "annotations": annotations},
                   "data": {"tls.crt": B64.encode(&device.cert_pem),
                            "tls.key": B64.encode(&device.key_pem),
                            "ca.crt": B64.encode(ca.pem())}}),
        )
        .expect("valid Secret");
}

fn roles_anywhere(secret: &str) -> Value {
    json!({"trustAnchorArn": ANCHOR, "profileArn": PROFILE, "roleArn": ROLE,
           "certificateSecretRef": {"name": secret, "namespace": CERTS},
           "sessionDuration": "1h"})
}

fn edge_cr(env: &Env, name: &str, aws: Value) {
    env.cr(
        name,
        json!({"secretName": format!("pull-{name}"), "namespaces": ["edge-apps"],
               "refresh": {"minInterval": "1s"}, "aws": aws}),
    );
}

/// The `auth` of the registry entry in CR `name`'s pull secret.
fn secret_auth(env: &Env, name: &str) -> Option<String> {
    let secret = env.secret("edge-apps", &format!("pull-{name}"))?;
    secret_auths(&secret).get(&registry(REGION)).cloned()
}

/// The access key id the last ECR call was signed with.
fn ecr_key_id(env: &Env) -> String {
    let headers = env.aws.last_headers("ecr").expect("ECR was called");
    let auth = headers["authorization"].to_str().unwrap().to_string();
    let credential = auth.split("Credential=").nth(1).unwrap_or_default();
    credential.split('/').next().unwrap_or_default().to_string()
}

fn ready_message(cr: &Value) -> String {
    ready_condition(cr).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// This binary's exposition line for CR `name`'s certificate expiry, if any.
async fn certificate_metric(env: &Env, name: &str) -> Option<String> {
    let label = format!(
        "ecr_creds_refresher_certificate_expiry_timestamp_seconds{{ecrpullsecret=\"{name}\",source=\"roles-anywhere\"}}"
    );
    env.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(&label))
        .map(str::to_string)
}

fn rsa(root: &DeviceCa, serial: u64) -> DeviceCert {
    root.issue(&DeviceSpec::new(
        device_pki::RSA_2048_PKCS8,
        device_pki::RSA_2048_PKCS1,
        serial,
    ))
    .unwrap()
}

fn p256(root: &DeviceCa, serial: u64) -> DeviceCert {
    root.issue(&DeviceSpec::new(
        device_pki::P256_PKCS8,
        device_pki::P256_SEC1,
        serial,
    ))
    .unwrap()
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificate_secret_gives_pull_secrets_and_a_renewed_one_signs_the_next_session() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let (env, ra) = edge_env(&root).await;
    let first = rsa(&root, 7001);
    tls_secret(&env, "device-cert", &first, &root, Some("renewing"));
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("renewing", ROLE)]);
    edge_cr(
        &env,
        "renewing",
        json!({"rolesAnywhere": roles_anywhere("device-cert")}),
    );
    let cr = env.wait_ready("renewing").await;
    let auth = secret_auth(&env, "renewing").expect("a pull secret for the registry");
    assert!(
        env.aws.issued_ecr_tokens().contains_key(&auth),
        "a token ECR issued"
    );
    assert_eq!(
        ra.accepted_serials(),
        ["7001"],
        "one session, this certificate"
    );
    assert_ne!(
        ecr_key_id(&env),
        ACCESS_KEY_ID,
        "not the operator's access key"
    );
    assert_eq!(
        cr["status"]["credentialSources"],
        json!([{"host": registry(REGION), "source": "rolesAnywhere edge-certs/device-cert"}])
    );
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let metric = certificate_metric(&env, "renewing")
        .await
        .expect("the certificate expiry metric");
    let value: f64 = metric.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (value - not_after.unix_timestamp() as f64).abs() < 120.0,
        "{metric}"
    );

    // cert-manager renews into the same Secret (here with a P-256 key): the session in
    // place has an hour to go, yet the next token is fetched with a session the renewed
    // certificate signed.
    let renewed = p256(&root, 7002);
    tls_secret(&env, "device-cert", &renewed, &root, Some("renewing"));
    wait_until("a session with the renewed certificate", WAIT, || {
        ra.accepted_serials().iter().any(|s| s == "7002")
    })
    .await;
    wait_until("a pull secret from the new session", WAIT, || {
        secret_auth(&env, "renewing")
            .is_some_and(|a| a != auth && env.aws.issued_ecr_tokens().contains_key(&a))
    })
    .await;
    assert_eq!(ra.accepted_serials(), ["7001", "7002"]);
    env.shutdown().await;
}

/// cert-manager's ECDSA 384 Certificate writes a SEC1 P-384 key: it signs the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p384_certificate_secret_gives_pull_secrets() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let (env, ra) = edge_env(&root).await;
    let device = root
        .issue(&DeviceSpec::new(
            device_pki::P384_PKCS8,
            device_pki::P384_SEC1,
            7384,
        ))
        .unwrap();
    tls_secret(&env, "device-cert", &device, &root, Some("p384"));
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("p384", ROLE)]);
    edge_cr(
        &env,
        "p384",
        json!({"rolesAnywhere": roles_anywhere("device-cert")}),
    );
    env.wait_ready("p384").await;
    let auth = secret_auth(&env, "p384").expect("a pull secret for the registry");
    assert!(
        env.aws.issued_ecr_tokens().contains_key(&auth),
        "a token ECR issued"
    );
    assert_eq!(
        ra.accepted_serials().first().map(String::as_str),
        Some("7384")
    );
    assert_ne!(
        ecr_key_id(&env),
        ACCESS_KEY_ID,
        "not the operator's access key"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_ecdsa_certificate_gives_certificate_expired_and_keeps_the_secrets() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let (env, ra) = edge_env(&root).await;
    tls_secret(
        &env,
        "device-cert",
        &p256(&root, 7101),
        &root,
        Some("lapsing"),
    );
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("lapsing", ROLE)]);
    edge_cr(
        &env,
        "lapsing",
        json!({"rolesAnywhere": roles_anywhere("device-cert")}),
    );
    env.wait_ready("lapsing").await;

    let now = time::OffsetDateTime::now_utc();
    let mut lapsed = DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_PKCS8, 7102);
    lapsed.not_before = now - time::Duration::days(30);
    lapsed.not_after = now - time::Duration::hours(1);
    tls_secret(
        &env,
        "device-cert",
        &root.issue(&lapsed).unwrap(),
        &root,
        Some("lapsing"),
    );
    let cr = env
        .wait_condition("lapsing", "False", "CertificateExpired")
        .await;
    let message = ready_message(&cr);
    let date = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert!(message.contains(&date(lapsed.not_after)), "{message}");
    assert!(message.contains(&date(lapsed.not_before)), "{message}");
    let kept = env
        .secret("edge-apps", "pull-lapsing")
        .expect("the Secret is kept");
    let auth = secret_auths(&kept)[&registry(REGION)].clone();
    let expiry = env.aws.issued_ecr_tokens()[&auth];
    assert!(
        expiry > now.unix_timestamp(),
        "it holds a live token ECR issued"
    );
    // Two more refreshes are due meanwhile; each is refused before AWS.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.secret("edge-apps", "pull-lapsing"),
        Some(kept),
        "the valid Secret is kept byte for byte"
    );
    assert_eq!(
        ra.accepted_serials(),
        ["7101"],
        "no session with the expired one"
    );
    let metric = certificate_metric(&env, "lapsing")
        .await
        .expect("the metric shows the lapsed date");
    assert!(
        metric.ends_with(&format!(" {}", lapsed.not_after.unix_timestamp())),
        "{metric}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_cr_gets_the_same_answer_whether_the_certificate_secret_exists_or_not() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let (env, ra) = edge_env(&root).await;
    // "device-cert" exists and grants only "owner"; "absent-cert" does not exist.
    tls_secret(
        &env,
        "device-cert",
        &p256(&root, 7201),
        &root,
        Some("owner"),
    );
    grant_roles(
        &env.k8s,
        OPERATOR_NAMESPACE,
        &[("nosy-a", ROLE), ("nosy-b", ROLE)],
    );
    edge_cr(
        &env,
        "nosy-a",
        json!({"rolesAnywhere": roles_anywhere("device-cert")}),
    );
    edge_cr(
        &env,
        "nosy-b",
        json!({"rolesAnywhere": roles_anywhere("absent-cert")}),
    );
    let a = env
        .wait_condition("nosy-a", "False", "CredentialsNotPermitted")
        .await;
    let b = env
        .wait_condition("nosy-b", "False", "CredentialsNotPermitted")
        .await;
    assert_eq!(
        ready_message(&a).replace("device-cert", "X"),
        ready_message(&b).replace("absent-cert", "X"),
        "the same words for a Secret that exists and one that does not"
    );
    assert!(
        ready_message(&a).contains("rolesAnywhere.certificateSecretRef"),
        "{}",
        ready_message(&a)
    );
    for cr in [&a, &b] {
        let sources = cr["status"]["credentialSources"].as_array();
        assert!(sources.is_none_or(Vec::is_empty), "{}", cr["status"]);
        assert_eq!(cr["status"].get("expiresAt"), None);
    }
    env.settle(Duration::from_millis(500)).await;
    assert!(ra.accepted_serials().is_empty(), "no session for either");
    assert_eq!(env.secret("edge-apps", "pull-nosy-a"), None);
    assert_eq!(certificate_metric(&env, "nosy-a").await, None);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_anywhere_role_needs_a_grant_and_a_role_chains_on_top() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let (env, ra) = edge_env(&root).await;
    tls_secret(
        &env,
        "device-cert",
        &rsa(&root, 7301),
        &root,
        Some("chained"),
    );
    edge_cr(
        &env,
        "chained",
        json!({"rolesAnywhere": roles_anywhere("device-cert"), "roleArn": CROSS_ACCOUNT_ROLE}),
    );
    // Only the chained role granted: the session's role is not.
    grant_roles(
        &env.k8s,
        OPERATOR_NAMESPACE,
        &[("chained", CROSS_ACCOUNT_ROLE)],
    );
    let cr = env
        .wait_condition("chained", "False", "RoleNotPermitted")
        .await;
    assert!(
        ready_message(&cr).contains("spec.aws.rolesAnywhere.roleArn"),
        "{}",
        ready_message(&cr)
    );
    assert!(ra.accepted_serials().is_empty());

    grant_roles(
        &env.k8s,
        OPERATOR_NAMESPACE,
        &[("chained", &format!("{ROLE},{CROSS_ACCOUNT_ROLE}"))],
    );
    let cr = env.wait_ready("chained").await;
    assert_eq!(ra.accepted_serials(), ["7301"]);
    assert_eq!(
        env.aws.calls().sts_assume_role,
        1,
        "the role chained on the session"
    );
    assert_eq!(
        env.aws.last_sts_param("RoleArn").as_deref(),
        Some(CROSS_ACCOUNT_ROLE)
    );
    assert_eq!(
        cr["status"]["credentialSources"][0]["source"],
        format!("rolesAnywhere edge-certs/device-cert > roleArn {CROSS_ACCOUNT_ROLE}")
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_key_is_certificate_invalid_and_no_key_byte_reaches_logs_status_or_events() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let (env, ra) = edge_env(&root).await;
    // A P-256 certificate with the RSA key in tls.key.
    let mut wrong = p256(&root, 7401);
    wrong.key_pem = device_pki::RSA_2048_PKCS1.to_string();
    tls_secret(&env, "device-cert", &wrong, &root, Some("mismatched"));
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("mismatched", ROLE)]);
    edge_cr(
        &env,
        "mismatched",
        json!({"rolesAnywhere": roles_anywhere("device-cert")}),
    );
    let cr = env
        .wait_condition("mismatched", "False", "CertificateInvalid")
        .await;
    assert!(
        ready_message(&cr).contains("does not match"),
        "{}",
        ready_message(&cr)
    );
    // And a tls.key that is no key at all.
    let mut garbage = p256(&root, 7402);
    garbage.key_pem =
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".into();
    tls_secret(&env, "device-cert", &garbage, &root, Some("mismatched"));
    wait_for("the unreadable key in status", WAIT, || {
        let cr = env.get_cr("mismatched").ok_or("absent")?;
        let m = ready_message(&cr);
        if ready_condition(&cr).unwrap()["reason"] == "CertificateInvalid"
            && !m.contains("does not match")
        {
            Ok(())
        } else {
            Err(m)
        }
    })
    .await;
    // And a P-384 key, read and found to be another certificate's.
    let mut other = p256(&root, 7403);
    other.key_pem = device_pki::P384_SEC1.to_string();
    tls_secret(&env, "device-cert", &other, &root, Some("mismatched"));
    wait_for("the P-384 key's mismatch in status", WAIT, || {
        let cr = env.get_cr("mismatched").ok_or("absent")?;
        let m = ready_message(&cr);
        if m.contains("does not match") {
            Ok(())
        } else {
            Err(m)
        }
    })
    .await;
    env.settle(Duration::from_millis(500)).await;
    assert!(ra.accepted_serials().is_empty());

    let places = [
        ("logs", logs().text()),
        (
            "CR status",
            format!("{:?}", env.k8s.list("ecrpullsecrets", None)),
        ),
        ("events", format!("{:?}", env.k8s.list("events", None))),
        ("metrics", env.metrics().await),
    ];
    assert!(
        places[0].1.contains("edge-certs"),
        "the logs saw the Secret's watch"
    );
    let mut needles: Vec<String> = Vec::new();
    for pem in [
        device_pki::RSA_2048_PKCS1,
        device_pki::P256_SEC1,
        device_pki::P384_SEC1,
    ] {
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            needles.push(line[..line.len().min(24)].to_string());
        }
        // As the API server sends it: base64 of the PEM.
        let encoded = B64.encode(pem);
        needles.extend(
            encoded
                .as_bytes()
                .chunks(24)
                .take(40)
                .skip(4)
                .map(|c| String::from_utf8_lossy(c).into_owned()),
        );
    }
    for (place, text) in &places {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "key bytes {needle:?} in {place}"
            );
        }
        assert!(!text.contains("PRIVATE KEY"), "a PEM key header in {place}");
    }
    env.shutdown().await;
}
