//! The `aws` module against the in-repo fake AWS endpoints (emulators/): credential
//! sources, ECR Public, retries, garbage bodies, the token cache (the reconciler's, fed by
//! `AwsTokenFetcher`) and proxies.

use crate::app::tokens::AwsTokenFetcher;
use crate::aws::context::AwsContext;
use crate::aws::credentials::container::ContainerToken;
use crate::aws::credentials::{ContainerSource, ImdsSource, WebIdentitySource};
use crate::aws::credentials::{CredentialProvider, CredentialSource, SecretCredentials};
use crate::aws::ecr::EcrClient;
use crate::aws::endpoint::Endpoints;
use crate::aws::error::{AwsError, ErrorKind};
use crate::aws::http::{AwsHttp, HttpConfig};
use crate::aws::retry::RetryPolicy;
use crate::aws::setup::Aws;
use crate::aws::sts::AssumeRoleParams;
use crate::aws::token::fetch_token;
use crate::aws::AwsEnv;
use crate::reconcile::decide::spec::{AwsAuth, SecretRef};
use crate::reconcile::tokens::{FetchToken, TokenCache, TokenGroup};
use aws_credential_types::Credentials;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, Fault, CONTAINER_PATH};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn http() -> AwsHttp {
    AwsHttp::new(&AwsEnv::default(), HttpConfig::default()).unwrap()
}

fn ctx(emu: &AwsEmulator) -> AwsContext {
    AwsContext {
        http: http(),
        endpoints: Endpoints::all_at(&emu.url()),
        region: "eu-west-1".into(),
        certificate_seen: Default::default(),
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    }
}

fn ecr(emu: &AwsEmulator) -> EcrClient {
    EcrClient::new(http(), Endpoints::all_at(&emu.url())).with_retry(fast_retry())
}

const EXAMPLE_KEY_ID: &str = "AKIAEXAMPLE";
const EXAMPLE_SECRET: &str = "example-secret";

fn static_keys(token: Option<&str>) -> Credentials {
    Credentials::new(
        EXAMPLE_KEY_ID,
        EXAMPLE_SECRET,
        token.map(str::to_string),
        None,
        "test",
    )
}

/// The emulator learns the example keys, as IAM would have issued them.
fn knowing_the_example_keys(emu: AwsEmulator) -> AwsEmulator {
    emu.add_key(EXAMPLE_KEY_ID, EXAMPLE_SECRET);
    emu
}

fn header(emu: &AwsEmulator, endpoint: &str, name: &str) -> Option<String> {
    emu.last_headers(endpoint)?
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// The operator's fetcher over `default` credentials, knowing the credentials Secrets in
/// `secrets`, with fast retries.
fn fetcher(
    emu: &AwsEmulator,
    default: CredentialSource,
    secrets: Vec<(SecretRef, SecretCredentials)>,
) -> AwsTokenFetcher {
    let aws = Aws {
        ctx: ctx(emu),
        provider: Arc::new(CredentialProvider::new(default, ctx(emu))),
        registry: crate::aws::registry::RegistryClient::new(ctx(emu).http, None)
            .expect("no override"),
    };
    AwsTokenFetcher::new(
        aws,
        Arc::new(move |r: &SecretRef| secrets.iter().find(|(k, _)| k == r).map(|(_, v)| v.clone())),
    )
    .with_ecr(ecr(emu))
}

fn group(region: &str, public: bool, auth: AwsAuth) -> TokenGroup {
    TokenGroup {
        region: region.into(),
        public,
        auth,
    }
}

/// The storm floor the reconciler uses by default.
const FLOOR: Duration = Duration::from_secs(60);

async fn emulator() -> AwsEmulator {
    knowing_the_example_keys(
        AwsEmulator::start(AwsEmulatorConfig::default())
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn ecr_token_is_signed_for_the_region_and_names_the_regional_registry() {
    let emu = emulator().await;
    let token = ecr(&emu)
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert_eq!(token.username, "AWS");
    assert_eq!(
        token.registry_host,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert!(token.expires_at > time::OffsetDateTime::now_utc() + time::Duration::hours(11));
    let auth = header(&emu, "ecr", "authorization").unwrap();
    assert!(auth.contains("/eu-west-1/ecr/aws4_request"), "{auth}");
    assert!(header(&emu, "ecr", "x-amz-security-token").is_none());
    assert_eq!(emu.calls().ecr, 1);
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_session_token() {
    let emu = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    emu.add_session_key(EXAMPLE_KEY_ID, EXAMPLE_SECRET, "sess-tok");
    ecr(&emu)
        .authorization_token(&static_keys(Some("sess-tok")), "us-west-2")
        .await
        .unwrap();
    assert_eq!(
        header(&emu, "ecr", "x-amz-security-token").as_deref(),
        Some("sess-tok")
    );
    let auth = header(&emu, "ecr", "authorization").unwrap();
    assert!(auth.contains("x-amz-security-token"), "{auth}");
}

#[tokio::test]
async fn ecr_public_token_is_signed_in_us_east_1_for_public_ecr_aws() {
    let emu = emulator().await;
    let token = ecr(&emu)
        .public_authorization_token(&static_keys(None))
        .await
        .unwrap();
    assert_eq!(token.registry_host, "public.ecr.aws");
    let auth = header(&emu, "ecr-public", "authorization").unwrap();
    assert!(
        auth.contains("/us-east-1/ecr-public/aws4_request"),
        "{auth}"
    );
    assert_eq!(
        header(&emu, "ecr-public", "x-amz-target").as_deref(),
        Some("SpencerFrontendService.GetAuthorizationToken")
    );
    assert_eq!((emu.calls().ecr_public, emu.calls().ecr), (1, 0));
}

#[tokio::test]
async fn throttling_is_retried_and_then_succeeds() {
    let emu = emulator().await;
    emu.set_fault(Fault::Throttle, Some(2));
    ecr(&emu)
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert_eq!(emu.calls().ecr, 3);
}

#[tokio::test]
async fn persistent_throttling_gives_up_after_bounded_attempts() {
    let emu = emulator().await;
    emu.set_fault(Fault::Throttle, None);
    let err = ecr(&emu)
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Throttling), "{err}");
    assert_eq!(emu.calls().ecr, 3);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let emu = emulator().await;
    emu.set_fault(Fault::ServerError, Some(1));
    ecr(&emu)
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert_eq!(emu.calls().ecr, 2);
}

#[tokio::test]
async fn garbage_bodies_become_clear_errors() {
    let emu = emulator().await;
    let client = ecr(&emu).with_retry(RetryPolicy::none());
    emu.set_fault(Fault::Html, Some(1));
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AwsError::Unparseable { status: 502, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("text/html") && !err.to_string().contains("Bad Gateway"),
        "{err}"
    );
    emu.set_fault(Fault::Truncated, Some(1));
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AwsError::Unparseable { status: 200, .. }),
        "{err:?}"
    );
    emu.set_fault(Fault::XmlError("AccessDenied".into()), Some(1));
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::AccessDenied), "{err}");
    emu.set_fault(Fault::AccessDenied, Some(1));
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ecr:GetAuthorizationToken"),
        "{err}"
    );
}

#[tokio::test]
async fn slow_answers_time_out() {
    let emu = emulator().await;
    emu.set_fault(Fault::Latency(Duration::from_secs(5)), None);
    let http = AwsHttp::new(
        &AwsEnv::default(),
        HttpConfig {
            request_timeout: Duration::from_millis(200),
            ..HttpConfig::default()
        },
    )
    .unwrap();
    let client =
        EcrClient::new(http, Endpoints::all_at(&emu.url())).with_retry(RetryPolicy::none());
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn unsigned_requests_are_refused_by_the_emulator() {
    // Guards the emulator itself: if it accepted anything, the signing tests would prove nothing.
    let emu = emulator().await;
    let req = http::Request::post(format!("{}/", emu.url()))
        .header("x-amz-target", emulators::aws::ECR_TARGET)
        .body(bytes::Bytes::from_static(b"{}"))
        .unwrap();
    let resp = http().send(req).await.unwrap();
    assert_eq!(resp.status, 400);
}

/// An ECR GetAuthorizationToken request signed by the operator's signer at `at`.
async fn ecr_signed_at(
    emu: &AwsEmulator,
    credentials: &Credentials,
    at: std::time::SystemTime,
) -> crate::aws::http::HttpResponse {
    let mut req = http::Request::post(format!("{}/", emu.url()))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", emulators::aws::ECR_TARGET)
        .body(bytes::Bytes::from_static(b"{}"))
        .unwrap();
    crate::aws::sigv4::sign_request(&mut req, credentials, "ecr", "eu-west-1", at).unwrap();
    http().send(req).await.unwrap()
}

/// The `__type` of a JSON error answer.
fn json_error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["__type"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn emulator_refuses_a_wrong_secret_key_as_aws_does() {
    let emu = emulator().await;
    let wrong = Credentials::new(EXAMPLE_KEY_ID, "not-the-secret", None, None, "test");
    let client = ecr(&emu).with_retry(RetryPolicy::none());
    let err = client
        .authorization_token(&wrong, "eu-west-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidSignature), "{err}");
    assert!(
        matches!(&err, AwsError::Service { status: 403, code, .. } if code == "InvalidSignatureException"),
        "{err:?}"
    );
    // STS speaks the query protocol: SignatureDoesNotMatch.
    let endpoint = Endpoints::all_at(&emu.url()).sts("us-east-1").unwrap();
    let params = AssumeRoleParams::new("arn:aws:iam::123456789012:role/pull", None).unwrap();
    let err = crate::aws::sts::assume_role(&http(), &endpoint, &wrong, &params)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AwsError::Service { status: 403, code, .. } if code == "SignatureDoesNotMatch"),
        "{err:?}"
    );
    // The same client with the right key gets a token: the refusal was the key's.
    client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert!(
        crate::aws::sts::assume_role(&http(), &endpoint, &static_keys(None), &params)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn emulator_refuses_a_request_dated_more_than_five_minutes_off() {
    let emu = emulator().await;
    let now = std::time::SystemTime::now();
    for (at, expired) in [
        (now - Duration::from_secs(6 * 60), true),
        (now + Duration::from_secs(6 * 60), true),
        (now - Duration::from_secs(4 * 60), false),
    ] {
        let resp = ecr_signed_at(&emu, &static_keys(None), at).await;
        if expired {
            assert_eq!(resp.status, 400);
            assert_eq!(json_error_code(&resp.body), "RequestExpired");
        } else {
            assert_eq!(resp.status, 200, "{:?}", resp.body);
        }
    }
    let err = crate::aws::ecr::parse_authorization_response(
        &ecr_signed_at(&emu, &static_keys(None), now - Duration::from_secs(600)).await,
        false,
    )
    .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::RequestExpired), "{err}");
}

#[tokio::test]
async fn emulator_refuses_unknown_keys_and_wrong_session_tokens() {
    let emu = emulator().await;
    let now = std::time::SystemTime::now();
    let unknown = Credentials::new("AKIANEVERISSUED", "x", None, None, "test");
    let resp = ecr_signed_at(&emu, &unknown, now).await;
    assert_eq!(resp.status, 403);
    assert_eq!(json_error_code(&resp.body), "UnrecognizedClientException");
    let endpoint = Endpoints::all_at(&emu.url()).sts("us-east-1").unwrap();
    let params = AssumeRoleParams::new("arn:aws:iam::123456789012:role/pull", None).unwrap();
    let err = crate::aws::sts::assume_role(&http(), &endpoint, &unknown, &params)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AwsError::Service { status: 403, code, .. } if code == "InvalidClientTokenId"),
        "{err:?}"
    );

    // Temporary keys from the emulator's STS work only with their own session token.
    let issued = crate::aws::sts::assume_role(&http(), &endpoint, &static_keys(None), &params)
        .await
        .unwrap();
    let id = issued.access_key_id().to_string();
    let secret = issued.secret_access_key().to_string();
    let token = issued.session_token().unwrap().to_string();
    for (token, status) in [
        (None, 403),
        (Some("emulated-session-token-999".to_string()), 403),
        (Some(token), 200),
    ] {
        let keys = Credentials::new(&id, &secret, token.clone(), None, "test");
        let resp = ecr_signed_at(&emu, &keys, now).await;
        assert_eq!(resp.status, status, "token {token:?}: {:?}", resp.body);
    }
    // A long-term key sent with a session token it never had.
    let resp = ecr_signed_at(&emu, &static_keys(Some("made-up")), now).await;
    assert_eq!(resp.status, 403);
}

#[tokio::test]
async fn imds_v2_gets_a_session_token_then_the_role_credentials() {
    let emu = emulator().await;
    let env = AwsEnv::from_pairs(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &emu.url())]);
    let source = ImdsSource::from_env(&env).unwrap();
    let creds = source.load(&http()).await.unwrap();
    assert!(creds.access_key_id().starts_with("ASIAEMULATOR"));
    assert!(creds.session_token().is_some() && creds.expiry().is_some());
    let calls = emu.calls();
    assert_eq!((calls.imds_token, calls.imds_credentials), (1, 2));
    assert_eq!(
        header(&emu, "imds", "x-aws-ec2-metadata-token").as_deref(),
        Some("imds-session-1")
    );
}

#[tokio::test]
async fn container_token_file_is_read_on_every_call() {
    let emu = AwsEmulator::start(AwsEmulatorConfig {
        container_token: Some("token-one".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("aws-container-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "token-one\n").unwrap();
    let source = ContainerSource {
        uri: format!("{}{CONTAINER_PATH}", emu.url()),
        token: ContainerToken::File(file.clone()),
    };
    source.load(&http()).await.unwrap();
    assert_eq!(
        header(&emu, "container", "authorization").as_deref(),
        Some("token-one")
    );

    emu.update_config(|c| c.container_token = Some("token-two".into()));
    std::fs::write(&file, "token-two").unwrap();
    source.load(&http()).await.unwrap();
    assert_eq!(
        header(&emu, "container", "authorization").as_deref(),
        Some("token-two")
    );

    std::fs::write(&file, "stale").unwrap();
    let err = source.load(&http()).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("stale"), "{err}");

    std::fs::write(&file, "line1\r\nline2").unwrap();
    let before = emu.calls().container;
    let err = source.load(&http()).await.unwrap_err();
    assert!(err.to_string().contains("CR or LF"), "{err}");
    assert_eq!(
        emu.calls().container,
        before,
        "a token with CR/LF must never be sent"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn concurrent_callers_share_one_credential_refresh() {
    let emu = emulator().await;
    let source = CredentialSource::Container(ContainerSource {
        uri: format!("{}{CONTAINER_PATH}", emu.url()),
        token: ContainerToken::None,
    });
    let provider = Arc::new(CredentialProvider::new(source, ctx(&emu)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(
                async move { p.credentials().await.map(|c| c.access_key_id().to_string()) },
            )
        })
        .collect();
    let mut keys = Vec::new();
    for t in tasks {
        keys.push(t.await.unwrap().unwrap());
    }
    keys.dedup();
    assert_eq!(keys.len(), 1);
    assert_eq!(emu.calls().container, 1);
    provider.credentials().await.unwrap();
    assert_eq!(
        emu.calls().container,
        1,
        "fresh credentials come from the cache"
    );
}

#[tokio::test]
async fn credentials_inside_the_refresh_margin_are_fetched_again() {
    let emu = AwsEmulator::start(AwsEmulatorConfig {
        credentials_lifetime: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let source = CredentialSource::Container(ContainerSource {
        uri: format!("{}{CONTAINER_PATH}", emu.url()),
        token: ContainerToken::None,
    });
    let provider = CredentialProvider::new(source, ctx(&emu));
    let first = provider.credentials().await.unwrap();
    let second = provider.credentials().await.unwrap();
    assert_ne!(first.access_key_id(), second.access_key_id());
    assert_eq!(emu.calls().container, 2);
}

#[tokio::test]
async fn web_identity_is_unsigned_and_rereads_the_token_file() {
    let emu = emulator().await;
    let dir = std::env::temp_dir().join(format!("aws-irsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "jwt-one\n").unwrap();
    let source = CredentialSource::WebIdentity(WebIdentitySource {
        role_arn: "arn:aws:iam::123456789012:role/ecr-pull".into(),
        token_file: file.clone(),
        session_name: "ecr-creds-refresher".into(),
    });
    let short = AwsEmulator::start(AwsEmulatorConfig {
        credentials_lifetime: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let provider = CredentialProvider::new(source, ctx(&short));
    let creds = provider.credentials().await.unwrap();
    assert!(creds.session_token().is_some());
    assert_eq!(
        short.last_sts_param("WebIdentityToken").as_deref(),
        Some("jwt-one")
    );
    assert_eq!(
        short.last_sts_param("RoleArn").as_deref(),
        Some("arn:aws:iam::123456789012:role/ecr-pull")
    );
    assert!(
        header(&short, "sts", "authorization").is_none(),
        "AssumeRoleWithWebIdentity must be unsigned"
    );
    std::fs::write(&file, "jwt-two").unwrap();
    provider.credentials().await.unwrap();
    assert_eq!(
        short.last_sts_param("WebIdentityToken").as_deref(),
        Some("jwt-two")
    );
    assert_eq!(short.calls().sts_web_identity, 2);
    drop(emu);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn role_chaining_signs_ecr_with_the_assumed_role() {
    let emu = emulator().await;
    let base = Arc::new(CredentialProvider::new(
        CredentialSource::Environment(static_keys(None)),
        ctx(&emu),
    ));
    let params = AssumeRoleParams::new(
        "arn:aws:iam::210987654321:role/cross-account-pull",
        Some("chain-test"),
    )
    .unwrap()
    .with_external_id(Some("ext-123".into()));
    let chained = Arc::new(CredentialProvider::assume_role(base, params));
    assert_eq!(
        chained.identity(),
        "env:AKIAEXAMPLE>assume-role:arn:aws:iam::210987654321:role/cross-account-pull"
    );
    let calls = AtomicU64::new(0);
    fetch_token(&ecr(&emu), &chained, "eu-west-1", false, &calls)
        .await
        .unwrap();
    assert_eq!(emu.last_sts_param("ExternalId").as_deref(), Some("ext-123"));
    assert_eq!(
        emu.last_sts_param("RoleSessionName").as_deref(),
        Some("chain-test")
    );
    assert!(header(&emu, "sts", "authorization")
        .unwrap()
        .contains("Credential=AKIAEXAMPLE/"));
    let ecr_auth = header(&emu, "ecr", "authorization").unwrap();
    assert!(ecr_auth.contains("Credential=ASIAEMULATOR"), "{ecr_auth}");
    assert!(header(&emu, "ecr", "x-amz-security-token")
        .unwrap()
        .starts_with("emulated-session-token-"));
}

#[tokio::test]
async fn token_cache_makes_one_call_per_group_for_concurrent_callers() {
    let emu = emulator().await;
    let source = CredentialSource::Environment(static_keys(None));
    let cache = Arc::new(TokenCache::new(fetcher(&emu, source, vec![])));
    let eu = group("eu-west-1", false, AwsAuth::default());
    let now = OffsetDateTime::now_utc();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (cache, eu) = (cache.clone(), eu.clone());
            tokio::spawn(async move {
                cache
                    .token(&eu, None, FLOOR, now)
                    .await
                    .map(|t| t.password.clone())
            })
        })
        .collect();
    let mut passwords = Vec::new();
    for t in tasks {
        passwords.push(t.await.unwrap().unwrap());
    }
    passwords.dedup();
    assert_eq!(passwords.len(), 1);
    assert_eq!((emu.calls().ecr, cache.calls()), (1, 1));

    for g in [
        group("us-east-1", false, AwsAuth::default()),
        group("eu-west-1", true, AwsAuth::default()),
        group("ap-south-1", true, AwsAuth::default()),
    ] {
        cache.token(&g, None, FLOOR, now).await.unwrap();
    }
    assert_eq!(
        (emu.calls().ecr, emu.calls().ecr_public),
        (2, 1),
        "one call per private region; public tokens ignore the region"
    );

    // Past half the 12 h lifetime the group gets a new token, in one more call.
    let later = now + time::Duration::hours(7);
    let refreshed = cache.token(&eu, None, FLOOR, later).await.unwrap();
    assert_ne!(refreshed.password, passwords[0]);
    assert_eq!(emu.calls().ecr, 3);
}

#[tokio::test]
async fn token_cache_refetches_when_the_secret_key_rotates() {
    let emu = emulator().await;
    for id in ["AKIAGLOBAL1", "AKIAGLOBAL2", "AKIATEAM1", "AKIATEAM2"] {
        emu.add_key(id, "s");
    }
    let keys = |id: &str| Some(Ok(Credentials::new(id, "s", None, None, "t")));
    // The operator's own credentials Secret, and a CR's.
    let (global_tx, global) = SecretCredentials::channel("ops/aws-keys");
    global_tx.send_replace(keys("AKIAGLOBAL1"));
    let team_ref = SecretRef {
        namespace: "team-a".into(),
        name: "aws".into(),
    };
    let (team_tx, team) = SecretCredentials::channel("team-a/aws");
    team_tx.send_replace(keys("AKIATEAM1"));
    let f = fetcher(
        &emu,
        CredentialSource::Secret(global),
        vec![(team_ref.clone(), team)],
    );
    let cache = TokenCache::new(f);
    let by_global = group("eu-west-1", false, AwsAuth::default());
    let by_team = group(
        "eu-west-1",
        false,
        AwsAuth {
            credentials_secret_ref: Some(team_ref),
            ..Default::default()
        },
    );
    let now = OffsetDateTime::now_utc();
    for g in [&by_global, &by_team, &by_global, &by_team] {
        cache.token(g, None, FLOOR, now).await.unwrap();
    }
    assert_eq!(emu.calls().ecr, 2);

    // Well inside the half-life and the floor: only the rotation explains a new call.
    team_tx.send_replace(keys("AKIATEAM2"));
    cache.token(&by_team, None, FLOOR, now).await.unwrap();
    cache.token(&by_global, None, FLOOR, now).await.unwrap();
    assert_eq!(emu.calls().ecr, 3, "only the rotated group refetches");
    assert!(header(&emu, "ecr", "authorization")
        .unwrap()
        .contains("Credential=AKIATEAM2/"));

    global_tx.send_replace(keys("AKIAGLOBAL2"));
    cache.token(&by_global, None, FLOOR, now).await.unwrap();
    cache.token(&by_global, None, FLOOR, now).await.unwrap();
    assert_eq!(emu.calls().ecr, 4);
    assert!(header(&emu, "ecr", "authorization")
        .unwrap()
        .contains("Credential=AKIAGLOBAL2/"));
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_but_not_in_a_hot_loop() {
    let emu = knowing_the_example_keys(
        AwsEmulator::start(AwsEmulatorConfig {
            token_lifetime: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let source = CredentialSource::Environment(static_keys(None));
    let cache = TokenCache::new(fetcher(&emu, source, vec![]));
    let eu = group("eu-west-1", false, AwsAuth::default());
    let first = cache
        .token(&eu, None, FLOOR, OffsetDateTime::now_utc())
        .await
        .unwrap();
    // Half the 10 s lifetime is long past at +59 s; the floor still holds the token.
    for s in [0, 5, 30, 59] {
        let at = first.fetched_at + time::Duration::seconds(s);
        cache.token(&eu, None, FLOOR, at).await.unwrap();
    }
    assert_eq!(
        emu.calls().ecr,
        1,
        "a token past its refresh point is still held for the minimum interval"
    );
    let at = first.fetched_at + time::Duration::seconds(60);
    cache.token(&eu, None, FLOOR, at).await.unwrap();
    assert_eq!(emu.calls().ecr, 2);
}

/// A CONNECT proxy that records the request head, answers `status`, then closes.
async fn recording_proxy(
    status: &'static str,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = conn
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    (url, rx)
}

#[tokio::test]
async fn https_goes_through_the_connect_proxy_with_credentials() {
    let (proxy, mut seen) = recording_proxy("407 Proxy Authentication Required").await;
    let proxy_with_auth = proxy.replace("http://", "http://user:pa55@");
    let env = AwsEnv::from_pairs(&[("HTTPS_PROXY", &proxy_with_auth)]);
    let http = AwsHttp::new(&env, HttpConfig::default()).unwrap();
    let client = EcrClient::new(http, Endpoints::default()).with_retry(RetryPolicy::none());
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::Connect { .. }), "{err:?}");
    assert!(!err.to_string().contains("pa55"), "{err}");
    let head = seen.recv().await.unwrap();
    assert!(
        head.starts_with("CONNECT api.ecr.eu-west-1.amazonaws.com:443 HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authorization: basic dxnlcjpwytu1"),
        "{head}"
    );
}

#[tokio::test]
async fn no_proxy_hosts_and_plain_http_endpoints_bypass_the_proxy() {
    let (proxy, mut seen) = recording_proxy("200 Connection established").await;
    let env = AwsEnv::from_pairs(&[
        ("HTTPS_PROXY", &proxy),
        ("NO_PROXY", "localhost,.internal.example"),
    ]);
    let http = AwsHttp::new(
        &env,
        HttpConfig {
            connect_timeout: Duration::from_millis(300),
            ..HttpConfig::default()
        },
    )
    .unwrap();
    let emu = emulator().await;
    EcrClient::new(http.clone(), Endpoints::all_at(&emu.url()))
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    let client = EcrClient::new(http, Endpoints::all_at("https://localhost:9"))
        .with_retry(RetryPolicy::none());
    let err = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::Connect { .. }), "{err:?}");
    assert!(
        seen.try_recv().is_err(),
        "the proxy must not have been used"
    );
}

async fn tls_emulator() -> (AwsEmulator, HttpConfig) {
    let emu = knowing_the_example_keys(
        AwsEmulator::start(AwsEmulatorConfig {
            tls: true,
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let der = emu.certificate_der().unwrap();
    let config = HttpConfig {
        extra_roots: vec![der.into()],
        ..HttpConfig::default()
    };
    (emu, config)
}

#[tokio::test]
async fn https_endpoints_are_verified_against_the_trusted_roots() {
    let (emu, trusting) = tls_emulator().await;
    let http = AwsHttp::new(&AwsEnv::default(), trusting).unwrap();
    let token = EcrClient::new(http, Endpoints::all_at(&emu.url()))
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert_eq!(token.username, "AWS");

    let untrusting = AwsHttp::new(&AwsEnv::default(), HttpConfig::default()).unwrap();
    let err = EcrClient::new(untrusting, Endpoints::all_at(&emu.url()))
        .with_retry(RetryPolicy::none())
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

/// A working CONNECT proxy: tunnels to the requested host:port and reports each target.
async fn tunneling_proxy() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(target.clone());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target.as_str()).await else {
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn https_through_a_connect_proxy_reaches_the_endpoint() {
    let (emu, trusting) = tls_emulator().await;
    let (proxy, mut seen) = tunneling_proxy().await;
    let env = AwsEnv::from_pairs(&[("HTTPS_PROXY", &proxy)]);
    let http = AwsHttp::new(&env, trusting).unwrap();
    let client = EcrClient::new(http, Endpoints::all_at(&emu.url()));
    let token = client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert_eq!(
        token.registry_host,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        seen.recv().await.unwrap(),
        format!("localhost:{}", emu.addr().port())
    );
    client
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    assert!(seen.try_recv().is_err(), "the tunnel is pooled and reused");
    assert_eq!(emu.calls().ecr, 2);
}

#[tokio::test]
async fn expired_session_credentials_are_reloaded_once() {
    let emu = emulator().await;
    let source = CredentialSource::Environment(static_keys(None));
    let f = fetcher(&emu, source, vec![]);
    let role = AwsAuth {
        role_arn: Some("arn:aws:iam::123456789012:role/pull".into()),
        ..Default::default()
    };
    let g = group("eu-west-1", false, role);
    f.fetch(&g).await.unwrap();
    assert_eq!((emu.calls().sts_assume_role, emu.calls().ecr), (1, 1));
    f.fetch(&g).await.unwrap();
    assert_eq!(
        (emu.calls().sts_assume_role, emu.calls().ecr),
        (1, 2),
        "the session is cached between fetches"
    );
    emu.set_fault(Fault::XmlError("ExpiredTokenException".into()), Some(1));
    f.fetch(&g).await.unwrap();
    assert_eq!(
        (emu.calls().sts_assume_role, emu.calls().ecr, f.calls()),
        (2, 4, 4),
        "one rejected call, one new session, one retried call"
    );
}

/// Paused time: the emulator's 30 s delay and the client's IMDS deadline race on the
/// test clock, so this runs instantly and deterministically.
#[tokio::test(start_paused = true)]
async fn imds_that_does_not_answer_fails_fast() {
    let emu = emulator().await;
    emu.set_fault(Fault::Latency(Duration::from_secs(30)), None);
    let env = AwsEnv::from_pairs(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &emu.url())]);
    let started = tokio::time::Instant::now();
    let err = ImdsSource::from_env(&env)
        .unwrap()
        .load(&http())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("no answer within 2s"), "{err}");
    assert!(err.to_string().contains("hop limit"), "{err}");
}

#[tokio::test]
async fn requests_carry_the_operator_user_agent() {
    let emu = emulator().await;
    ecr(&emu)
        .authorization_token(&static_keys(None), "eu-west-1")
        .await
        .unwrap();
    let ua = header(&emu, "ecr", "user-agent").unwrap();
    assert!(ua.starts_with("ecr-creds-refresher/"), "{ua}");
}
