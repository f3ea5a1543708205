//! IAM Roles Anywhere against the emulator's CreateSession, whose verifier is its own code
//! (x509-parser and ring): the operator's signer is accepted for RSA and ECDSA devices,
//! with and without intermediates, and each forgery the service must refuse is refused.
//! Then the operator-wide source: files re-read per session, validity checked before
//! AWS is asked, role chaining on top, credentials the emulated ECR accepts.

use crate::aws::context::AwsContext;
use crate::aws::credentials::is_fresh;
use crate::aws::credentials::{CredentialProvider, CredentialSource, SourceKind};
use crate::aws::ecr::EcrClient;
use crate::aws::endpoint::Endpoints;
use crate::aws::error::AwsError;
use crate::aws::http::{AwsHttp, HttpConfig};
use crate::aws::rolesanywhere::session::create_session;
use crate::aws::rolesanywhere::signer::sign_request;
use crate::aws::rolesanywhere::source::{
    CERTIFICATE, PRIVATE_KEY, PROFILE_ARN, ROLE_ARN, TRUST_ANCHOR_ARN,
};
use crate::aws::rolesanywhere::SessionParams;
use crate::aws::sts::AssumeRoleParams;
use crate::aws::x509::{CertificateError, X509Identity};
use crate::aws::AwsEnv;
use bytes::Bytes;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, RolesAnywhereConfig};
use emulators::device_pki::{self, DeviceCa, DeviceCert, DeviceSpec};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta-emu";
const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p-emu";
const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";

struct Fixture {
    emu: AwsEmulator,
    root: DeviceCa,
    ra: RolesAnywhereConfig,
}

async fn fixture() -> Fixture {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let ra = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    let emu = AwsEmulator::start(AwsEmulatorConfig {
        roles_anywhere: Some(ra.clone()),
        ..AwsEmulatorConfig::default()
    })
    .await
    .unwrap();
    Fixture { emu, root, ra }
}

fn http() -> AwsHttp {
    AwsHttp::new(&AwsEnv::default(), HttpConfig::default()).unwrap()
}

fn params() -> SessionParams {
    SessionParams {
        trust_anchor_arn: ANCHOR.into(),
        profile_arn: PROFILE.into(),
        role_arn: ROLE.into(),
        duration_seconds: 3600,
    }
}

fn identity(device: &DeviceCert) -> X509Identity {
    X509Identity::from_pem(device.cert_pem.as_bytes(), device.key_pem.as_bytes()).unwrap()
}

fn rsa(serial: u64) -> DeviceSpec<'static> {
    DeviceSpec::new(
        device_pki::RSA_2048_PKCS8,
        device_pki::RSA_2048_PKCS1,
        serial,
    )
}

fn ecdsa(serial: u64) -> DeviceSpec<'static> {
    DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_SEC1, serial)
}

/// A CreateSession signed at `at`, changed by `tamper` after signing; the HTTP status
/// and body of the answer.
async fn send(
    f: &Fixture,
    id: &X509Identity,
    at: SystemTime,
    body: &str,
    tamper: impl FnOnce(&mut http::Request<Bytes>),
) -> (u16, String) {
    let mut req = http::Request::post(format!("{}/sessions", f.emu.url()))
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap();
    sign_request(&mut req, id, "us-east-1", at).unwrap();
    tamper(&mut req);
    let answer = http().send(req).await.unwrap();
    (
        answer.status.as_u16(),
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

fn body() -> String {
    serde_json::json!({"durationSeconds": 3600, "profileArn": PROFILE, "roleArn": ROLE, "trustAnchorArn": ANCHOR}).to_string()
}

#[tokio::test]
async fn rsa_and_ecdsa_devices_get_credentials_the_emulated_ecr_accepts() {
    let f = fixture().await;
    let endpoint = Endpoints::all_at(&f.emu.url())
        .rolesanywhere("us-east-1")
        .unwrap();
    let ecr = EcrClient::new(http(), Endpoints::all_at(&f.emu.url()));
    for (spec, serial) in [(rsa(1001), "1001"), (ecdsa(1002), "1002")] {
        let id = identity(&f.root.issue(&spec).unwrap());
        let creds = create_session(&http(), &endpoint, &id, &params(), SystemTime::now())
            .await
            .unwrap();
        assert!(creds.access_key_id().starts_with("ASIA"));
        assert!(is_fresh(&creds, SystemTime::now()));
        let token = ecr.authorization_token(&creds, "us-east-1").await.unwrap();
        assert!(!token.password.is_empty());
        assert_eq!(
            f.ra.accepted_serials().last().map(String::as_str),
            Some(serial)
        );
    }
}

/// P-384 signs SHA-256 (AWS4-X509-ECDSA-SHA256, as aws_signing_helper does); the
/// emulator checks it with ring's ECDSA_P384_SHA256_ASN1 and the certificate's key.
#[tokio::test]
async fn p384_pkcs8_and_sec1_devices_get_credentials_the_emulated_ecr_accepts() {
    let f = fixture().await;
    let endpoint = Endpoints::all_at(&f.emu.url())
        .rolesanywhere("us-east-1")
        .unwrap();
    let ecr = EcrClient::new(http(), Endpoints::all_at(&f.emu.url()));
    for (stored, serial) in [
        (device_pki::P384_PKCS8, "1384"),
        (device_pki::P384_SEC1, "2384"),
    ] {
        let spec = DeviceSpec::new(device_pki::P384_PKCS8, stored, serial.parse().unwrap());
        let id = identity(&f.root.issue(&spec).unwrap());
        let creds = create_session(&http(), &endpoint, &id, &params(), SystemTime::now())
            .await
            .unwrap();
        let token = ecr.authorization_token(&creds, "us-east-1").await.unwrap();
        assert!(!token.password.is_empty());
        assert_eq!(
            f.ra.accepted_serials().last().map(String::as_str),
            Some(serial)
        );
        // The same signature over a changed body is refused: the key really signed.
        let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |req| {
            *req.body_mut() = Bytes::from(body().replace("3600", "3601"));
        })
        .await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer.contains("signature"), "{answer}");
    }
}

#[tokio::test]
async fn an_intermediate_is_accepted_in_the_chain_header_and_refused_without_it() {
    let f = fixture().await;
    let intermediate = f.root.intermediate("edge issuing CA").unwrap();
    let device = intermediate.issue(&ecdsa(2001)).unwrap();
    let (status, answer) = send(&f, &identity(&device), SystemTime::now(), &body(), |_| {}).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = send(&f, &identity(&device), SystemTime::now(), &body(), |r| {
        r.headers_mut().remove("x-amz-x509-chain");
    })
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("no chain to the trust anchor"), "{answer}");
}

#[tokio::test]
async fn a_non_ca_issuer_or_a_leaf_without_digital_signature_is_refused() {
    let f = fixture().await;
    let impostor = f.root.impostor("not a CA").unwrap();
    let id = identity(&impostor.issue(&ecdsa(2101)).unwrap());
    assert_eq!(id.chain().len(), 1);
    let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |_| {}).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("no chain to the trust anchor"), "{answer}");
    let mut spec = ecdsa(2102);
    spec.digital_signature = false;
    let id = identity(&f.root.issue(&spec).unwrap());
    let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |_| {}).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("digitalSignature"), "{answer}");
    assert!(f.ra.accepted_serials().is_empty());
}

#[tokio::test]
async fn a_stale_x_amz_date_is_refused() {
    let f = fixture().await;
    for spec in [rsa(3001), ecdsa(3002)] {
        let id = identity(&f.root.issue(&spec).unwrap());
        let stale = SystemTime::now() - Duration::from_secs(10 * 60);
        let (status, answer) = send(&f, &id, stale, &body(), |_| {}).await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer.contains("Signature expired"), "{answer}");
    }
}

#[tokio::test]
async fn a_wrong_serial_in_the_credential_is_refused() {
    let f = fixture().await;
    let id = identity(&f.root.issue(&ecdsa(4001)).unwrap());
    let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |r| {
        let auth = r.headers()["authorization"].to_str().unwrap().to_string();
        let forged = auth.replace("Credential=4001/", "Credential=4002/");
        r.headers_mut()
            .insert("authorization", forged.parse().unwrap());
    })
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("serial"), "{answer}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let f = fixture().await;
    let stranger = DeviceCa::root("edge fleet CA").unwrap(); // same name, other key
    for spec in [rsa(5001), ecdsa(5002)] {
        let id = identity(&stranger.issue(&spec).unwrap());
        let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |_| {}).await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer.contains("Untrusted signing certificate"), "{answer}");
    }
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let f = fixture().await;
    for spec in [rsa(6001), ecdsa(6002)] {
        let id = identity(&f.root.issue(&spec).unwrap());
        let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |r| {
            *r.body_mut() = Bytes::from(body().replace("3600", "43200"));
        })
        .await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer.contains("signature"), "{answer}");
    }
}

#[tokio::test]
async fn an_expired_certificate_or_an_unlisted_role_is_refused() {
    let f = fixture().await;
    let mut spec = ecdsa(7001);
    spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let id = identity(&f.root.issue(&spec).unwrap());
    let (status, answer) = send(&f, &id, SystemTime::now(), &body(), |_| {}).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("validity"), "{answer}");
    let id = identity(&f.root.issue(&ecdsa(7002)).unwrap());
    let other_role = body().replace("edge-ecr-pull", "admin");
    let (status, answer) = send(&f, &id, SystemTime::now(), &other_role, |_| {}).await;
    assert_eq!(status, 403, "{answer}");
    assert!(f.ra.accepted_serials().is_empty());
}

/// Device files in a directory of the test's own, as a mounted Secret would be.
struct Mount(PathBuf);

impl Mount {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ra-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, device: &DeviceCert) {
        std::fs::write(self.0.join("tls.crt"), &device.cert_pem).unwrap();
        std::fs::write(self.0.join("tls.key"), &device.key_pem).unwrap();
    }

    fn env(&self, url: &str) -> AwsEnv {
        let crt = self.0.join("tls.crt");
        let key = self.0.join("tls.key");
        AwsEnv::from_pairs(&[
            (TRUST_ANCHOR_ARN, ANCHOR),
            (PROFILE_ARN, PROFILE),
            (ROLE_ARN, ROLE),
            (CERTIFICATE, crt.to_str().unwrap()),
            (PRIVATE_KEY, key.to_str().unwrap()),
            ("AWS_ENDPOINT_URL", url),
        ])
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn provider(env: &AwsEnv) -> CredentialProvider {
    let source = CredentialSource::from_env(SourceKind::RolesAnywhere, env, None).unwrap();
    let ctx = AwsContext {
        http: http(),
        endpoints: Endpoints::from_env(env).unwrap(),
        region: "us-east-1".into(),
        certificate_seen: Default::default(),
    };
    CredentialProvider::new(source, ctx)
}

#[tokio::test]
async fn the_source_rereads_a_renewed_certificate_for_the_next_session() {
    let f = fixture().await;
    let mount = Mount::new("renew");
    mount.write(&f.root.issue(&rsa(8001)).unwrap());
    let provider = provider(&mount.env(&f.emu.url()));
    assert_eq!(
        provider.identity(),
        format!("roles-anywhere:{ANCHOR}>{ROLE}")
    );
    let first = provider.credentials().await.unwrap();
    // Cached while fresh: no second session.
    provider.credentials().await.unwrap();
    assert_eq!(f.ra.accepted_serials(), ["8001"]);
    mount.write(&f.root.issue(&ecdsa(8002)).unwrap());
    provider.invalidate().await; // what an expiring session leads to
    let second = provider.credentials().await.unwrap();
    assert_ne!(first.access_key_id(), second.access_key_id());
    assert_eq!(f.ra.accepted_serials(), ["8001", "8002"]);
}

#[tokio::test]
async fn an_expired_or_future_certificate_fails_before_aws_is_asked() {
    let f = fixture().await;
    let mount = Mount::new("expired");
    let provider = provider(&mount.env(&f.emu.url()));
    let now = time::OffsetDateTime::now_utc();
    let mut expired = ecdsa(9001);
    expired.not_before = now - time::Duration::days(2);
    expired.not_after = now - time::Duration::days(1);
    mount.write(&f.root.issue(&expired).unwrap());
    let err = provider.credentials().await.unwrap_err();
    assert!(
        matches!(err, AwsError::Certificate(CertificateError::Expired { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("expired at"), "{err}");
    let mut future = ecdsa(9002);
    future.not_before = now + time::Duration::days(1);
    future.not_after = now + time::Duration::days(2);
    mount.write(&f.root.issue(&future).unwrap());
    let err = provider.credentials().await.unwrap_err();
    assert!(
        matches!(
            err,
            AwsError::Certificate(CertificateError::NotYetValid { .. })
        ),
        "{err}"
    );
    assert_eq!(f.emu.calls().total, 0, "AWS was asked");
    std::fs::remove_file(mount.0.join("tls.key")).unwrap();
    let err = provider.credentials().await.unwrap_err();
    assert!(
        matches!(err, AwsError::Certificate(CertificateError::Read { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn role_chaining_on_top_of_roles_anywhere_keeps_working() {
    let f = fixture().await;
    let mount = Mount::new("chain");
    mount.write(&f.root.issue(&ecdsa(10_001)).unwrap());
    let base = Arc::new(provider(&mount.env(&f.emu.url())));
    let params =
        AssumeRoleParams::new("arn:aws:iam::210987654321:role/cross-account-pull", None).unwrap();
    let chained = CredentialProvider::assume_role(base.clone(), params);
    assert!(
        chained.identity().starts_with("roles-anywhere:"),
        "{}",
        chained.identity()
    );
    let creds = chained.credentials().await.unwrap();
    assert_eq!(f.emu.calls().sts_assume_role, 1);
    assert_eq!(f.ra.accepted_serials(), ["10001"]);
    let ecr = EcrClient::new(http(), Endpoints::all_at(&f.emu.url()));
    ecr.authorization_token(&creds, "us-east-1").await.unwrap();
}
