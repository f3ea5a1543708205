//! The `aws` module against moto's server mode, which recomputes every SigV4 signature and
//! enforces IAM policies once its INITIAL_NO_AUTH_ACTION_COUNT setup requests are used up.
//!
//! moto is found at $MOTO_SERVER, else `.venv/bin/moto_server` at the repository root
//! (created by `make test`). A missing moto FAILS the tests: skipping would hide them.

use crate::app::tokens::AwsTokenFetcher;
use crate::aws::context::AwsContext;
use crate::aws::credentials::WebIdentitySource;
use crate::aws::credentials::{CredentialProvider, CredentialSource};
use crate::aws::ecr::EcrClient;
use crate::aws::endpoint::Endpoints;
use crate::aws::error::ErrorKind;
use crate::aws::http::{AwsHttp, HttpConfig};
use crate::aws::retry::RetryPolicy;
use crate::aws::setup::Aws;
use crate::aws::sigv4::sign_request;
use crate::aws::sts::assume_role;
use crate::aws::sts::AssumeRoleParams;
use crate::aws::wire::{form_encode, xml_tag};
use crate::aws::AwsEnv;
use crate::reconcile::decide::spec::AwsAuth;
use crate::reconcile::tokens::{TokenCache, TokenGroup};
use aws_credential_types::Credentials;
use bytes::Bytes;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const REGION: &str = "eu-west-1";
const ECR_AND_ASSUME: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","sts:AssumeRole"],"Resource":"*"}]}"#;
const ECR_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#;
const NO_ECR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;
const TRUST_ANYONE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.example"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;

/// A moto server on an ephemeral port, killed on drop (also when a test panics).
struct Moto {
    child: Child,
    url: String,
    http: AwsHttp,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    let path = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
    assert!(
        path.exists(),
        "moto_server not found at {}: run `make test` (it creates .venv with tests/moto/requirements.txt), \
         or set MOTO_SERVER to a moto_server binary",
        path.display()
    );
    path
}

impl Moto {
    /// Starts moto letting `no_auth` requests through unchecked, and waits until it listens.
    fn start(no_auth: u32) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", no_auth.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let http = AwsHttp::new(&AwsEnv::default(), HttpConfig::default()).unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http,
        }
    }

    fn ctx(&self) -> AwsContext {
        AwsContext {
            http: self.http.clone(),
            endpoints: Endpoints::all_at(&self.url),
            region: REGION.into(),
            certificate_seen: Default::default(),
        }
    }

    fn ecr(&self) -> EcrClient {
        EcrClient::new(self.http.clone(), Endpoints::all_at(&self.url))
            .with_retry(RetryPolicy::none())
    }

    /// An IAM query API call; moto routes by the signature's service, so it is signed (with
    /// throwaway keys: during the no-auth window moto does not check them).
    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = vec![("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let mut req = http::Request::post(format!("{}/", self.url))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(Bytes::from(form_encode(&form)))
            .unwrap();
        let setup = Credentials::new("AKIASETUPSETUPSETUP0", "setup", None, None, "setup");
        sign_request(&mut req, &setup, "iam", "us-east-1", SystemTime::now()).unwrap();
        let resp = self.http.send(req).await.unwrap();
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        assert!(
            resp.status.is_success(),
            "IAM {params:?} failed: {} {body}",
            resp.status
        );
        body
    }

    /// A user with an access key and an inline policy: 3 requests.
    async fn user(&self, name: &str, policy: &str) -> Credentials {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)])
            .await;
        let key = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", name)])
            .await;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "p"),
            ("PolicyDocument", policy),
        ])
        .await;
        let id = xml_tag(&key, "AccessKeyId").unwrap().to_string();
        let secret = xml_tag(&key, "SecretAccessKey").unwrap().to_string();
        Credentials::new(id, secret, None, None, "moto-user")
    }

    /// A role any principal may assume, allowed to get ECR tokens: 2 requests.
    async fn role(&self, name: &str) -> String {
        let created = self
            .iam(&[
                ("Action", "CreateRole"),
                ("RoleName", name),
                ("AssumeRolePolicyDocument", TRUST_ANYONE),
            ])
            .await;
        self.iam(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", name),
            ("PolicyName", "p"),
            ("PolicyDocument", ECR_ONLY),
        ])
        .await;
        xml_tag(&created, "Arn").unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_checks_signatures_and_iam_policies_on_get_authorization_token() {
    let moto = Moto::start(6);
    let puller = moto.user("puller", ECR_AND_ASSUME).await;
    let nopull = moto.user("nopull", NO_ECR).await;
    let ecr = moto.ecr();

    // The right key gets a token; moto's expiresAt is in 2015 and is recorded as sent.
    let token = ecr.authorization_token(&puller, REGION).await.unwrap();
    assert_eq!(token.username, "AWS");
    assert!(
        token.password.ends_with("-auth-token"),
        "moto's password form"
    );
    assert!(
        token.registry_host.contains(".dkr.ecr."),
        "{}",
        token.registry_host
    );
    assert_eq!(token.expires_at.year(), 2015);

    // A wrong secret: moto recomputes the signature and refuses.
    let wrong = Credentials::new(puller.access_key_id(), "not-the-secret", None, None, "t");
    let err = ecr.authorization_token(&wrong, REGION).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidSignature), "{err}");
    assert!(err.to_string().contains("secret access key"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");

    // A key without ecr:GetAuthorizationToken.
    let err = ecr.authorization_token(&nopull, REGION).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::AccessDenied), "{err}");
    assert!(
        err.to_string().contains("ecr:GetAuthorizationToken"),
        "{err}"
    );

    // An unknown key.
    let unknown = Credentials::new("AKIAUNKNOWNUNKNOWN00", "x", None, None, "t");
    let err = ecr.authorization_token(&unknown, REGION).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::UnrecognizedClient), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_assume_role_gives_session_credentials_that_get_a_token() {
    let moto = Moto::start(5);
    let base = moto.user("base", ECR_AND_ASSUME).await;
    let role_arn = moto.role("pull-role").await;
    let sts = Endpoints::all_at(&moto.url).sts(REGION).unwrap();

    let params = AssumeRoleParams::new(&role_arn, Some("moto-test")).unwrap();
    let session = assume_role(&moto.http, &sts, &base, &params).await.unwrap();
    assert!(session.session_token().is_some_and(|t| !t.is_empty()));
    assert!(session.expiry().unwrap() > SystemTime::now());
    let token = moto
        .ecr()
        .authorization_token(&session, REGION)
        .await
        .unwrap();
    assert_eq!(token.username, "AWS");

    // The same as the operator does it: the CR's role chained on the default credentials,
    // through the fetcher and the reconciler's token cache.
    let aws = Aws {
        ctx: moto.ctx(),
        provider: Arc::new(CredentialProvider::new(
            CredentialSource::Environment(base.clone()),
            moto.ctx(),
        )),
        registry: crate::aws::registry::RegistryClient::new(moto.ctx().http, None).unwrap(),
    };
    let auth = AwsAuth {
        role_arn: Some(role_arn.clone()),
        role_session_name: Some("moto-test".into()),
        ..Default::default()
    };
    let fetcher = AwsTokenFetcher::new(aws, Arc::new(|_: &_| None)).with_ecr(moto.ecr());
    let chained = fetcher.provider_for(&auth).unwrap();
    let cache = TokenCache::new(fetcher);
    let g = TokenGroup {
        region: REGION.into(),
        public: false,
        auth,
    };
    let floor = Duration::from_secs(60);
    let first = cache
        .token(&g, None, floor, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!((cache.calls(), chained.loads()), (1, 1));
    // moto's expiresAt is in 2015: the token is held to the floor, not refetched in a loop.
    assert!(
        first.expires_at < first.fetched_at,
        "{:?}",
        first.expires_at
    );
    for s in [0, 30, 59] {
        let at = first.fetched_at + time::Duration::seconds(s);
        cache.token(&g, None, floor, at).await.unwrap();
    }
    assert_eq!(cache.calls(), 1);
    let at = first.fetched_at + time::Duration::seconds(60);
    cache.token(&g, None, floor, at).await.unwrap();
    assert_eq!(
        (cache.calls(), chained.loads()),
        (2, 1),
        "a new token after the floor, with the cached session"
    );

    // A wrong secret on the base key: STS answers with an XML signature error.
    let wrong = Credentials::new(base.access_key_id(), "wrong", None, None, "t");
    let err = assume_role(&moto.http, &sts, &wrong, &params)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidSignature), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_assume_role_with_web_identity_is_unsigned_and_reads_the_token_file() {
    // moto only lets unsigned requests through inside its no-auth window: setup (2) plus
    // the web identity call itself (1). Everything after is signed and checked.
    let moto = Moto::start(3);
    let role_arn = moto.role("irsa-role").await;
    let dir = std::env::temp_dir().join(format!("moto-irsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06ZWNyIn0.c2ln\n")
        .unwrap();
    let source = CredentialSource::WebIdentity(WebIdentitySource {
        role_arn: role_arn.clone(),
        token_file: file,
        session_name: "ecr-creds-refresher".into(),
    });
    let provider = CredentialProvider::new(source, moto.ctx());
    let creds = provider.credentials().await.unwrap();
    assert!(creds.session_token().is_some());
    assert!(creds.expiry().is_some());
    // The web identity session may now sign ECR calls, checked by moto.
    let token = moto
        .ecr()
        .authorization_token(&creds, REGION)
        .await
        .unwrap();
    assert_eq!(token.username, "AWS");
    std::fs::remove_dir_all(&dir).ok();
}
