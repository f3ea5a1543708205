//! The reconciler's token cache fed by the AWS fetcher, against the fake AWS endpoints:
//! groups map to the right credentials and roles, and errors to condition reasons.

use crate::app::tokens::AwsTokenFetcher;
use crate::aws::context::AwsContext;
use crate::aws::credentials::{CredentialProvider, CredentialSource, SecretCredentials};
use crate::aws::ecr::EcrClient;
use crate::aws::endpoint::Endpoints;
use crate::aws::http::{AwsHttp, HttpConfig};
use crate::aws::retry::RetryPolicy;
use crate::aws::setup::Aws;
use crate::aws::AwsEnv;
use crate::reconcile::decide::spec::{AwsAuth, SecretRef};
use crate::reconcile::tokens::{FetchToken, TokenCache, TokenGroup};
use aws_credential_types::Credentials;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, Fault};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn aws(emu: &AwsEmulator) -> Aws {
    let http = AwsHttp::new(&AwsEnv::default(), HttpConfig::default()).unwrap();
    let ctx = AwsContext {
        http,
        endpoints: Endpoints::all_at(&emu.url()),
        region: "eu-west-1".into(),
        certificate_seen: Default::default(),
    };
    let keys = Credentials::new("AKIADEFAULT", "default-secret", None, None, "test");
    let provider = Arc::new(CredentialProvider::new(
        CredentialSource::Environment(keys),
        ctx.clone(),
    ));
    let registry = crate::aws::registry::RegistryClient::new(ctx.http.clone(), None).unwrap();
    Aws {
        ctx,
        provider,
        registry,
    }
}

fn fetcher(emu: &AwsEmulator, secrets: Vec<(SecretRef, SecretCredentials)>) -> AwsTokenFetcher {
    // The keys `aws` signs with, known to the fake AWS as IAM would know them.
    emu.add_key("AKIADEFAULT", "default-secret");
    let fast = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    };
    let a = aws(emu);
    let ecr = EcrClient::new(a.ctx.http.clone(), a.ctx.endpoints.clone()).with_retry(fast);
    AwsTokenFetcher::new(
        a,
        Arc::new(move |r: &SecretRef| secrets.iter().find(|(k, _)| k == r).map(|(_, v)| v.clone())),
    )
    .with_ecr(ecr)
}

fn group(region: &str, auth: AwsAuth) -> TokenGroup {
    TokenGroup {
        region: region.into(),
        public: false,
        auth,
    }
}

fn last_key_id(emu: &AwsEmulator) -> String {
    let auth = emu
        .last_headers("ecr")
        .unwrap()
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    auth.split("Credential=")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn concurrent_reconciles_of_one_group_make_one_ecr_call() {
    let emu = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    let cache = Arc::new(TokenCache::new(fetcher(&emu, vec![])));
    let g = group("eu-west-1", AwsAuth::default());
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (cache, g) = (cache.clone(), g.clone());
            tokio::spawn(async move {
                cache
                    .token(&g, None, Duration::from_secs(60), OffsetDateTime::now_utc())
                    .await
            })
        })
        .collect();
    for t in tasks {
        let token = t.await.unwrap().unwrap();
        assert_eq!(
            token.registry_host.as_deref(),
            Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        );
    }
    assert_eq!((emu.calls().ecr, cache.calls()), (1, 1));
    assert_eq!(last_key_id(&emu), "AKIADEFAULT");
}

#[tokio::test]
async fn groups_pick_the_secret_and_role_they_name() {
    let emu = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    let team = SecretRef {
        namespace: "team-a".into(),
        name: "aws".into(),
    };
    let (tx, secret) = SecretCredentials::channel("team-a/aws");
    emu.add_key("AKIATEAMA", "team-secret");
    tx.send_replace(Some(Ok(Credentials::new(
        "AKIATEAMA",
        "team-secret",
        None,
        None,
        "t",
    ))));
    let f = fetcher(&emu, vec![(team.clone(), secret)]);

    f.fetch(&group(
        "eu-west-1",
        AwsAuth {
            credentials_secret_ref: Some(team.clone()),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    assert_eq!(last_key_id(&emu), "AKIATEAMA");

    let role = AwsAuth {
        role_arn: Some("arn:aws:iam::210987654321:role/pull".into()),
        external_id: Some("ext".into()),
        role_session_name: Some("cr-a".into()),
        ..Default::default()
    };
    f.fetch(&group("us-east-1", role.clone())).await.unwrap();
    f.fetch(&group("us-west-2", role)).await.unwrap();
    assert!(last_key_id(&emu).starts_with("ASIAEMULATOR"));
    assert_eq!(
        emu.calls().sts_assume_role,
        1,
        "assumed-role credentials are cached across groups"
    );
    assert_eq!(emu.last_sts_param("ExternalId").as_deref(), Some("ext"));
    assert_eq!(
        emu.last_sts_param("RoleSessionName").as_deref(),
        Some("cr-a")
    );

    let public = TokenGroup {
        region: String::new(),
        public: true,
        auth: AwsAuth::default(),
    };
    let t = f.fetch(&public).await.unwrap();
    assert_eq!(t.registry_host.as_deref(), Some("public.ecr.aws"));
}

#[tokio::test]
async fn errors_map_to_condition_reasons_without_secrets() {
    let emu = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    let f = fetcher(&emu, vec![]);
    let unknown = AwsAuth {
        credentials_secret_ref: Some(SecretRef {
            namespace: "x".into(),
            name: "y".into(),
        }),
        ..Default::default()
    };
    let err = f.fetch(&group("eu-west-1", unknown)).await.unwrap_err();
    assert_eq!(err.reason.as_str(), "CredentialsMissing");
    assert!(err.message.contains("x/y"), "{err}");

    let bad_role = AwsAuth {
        role_arn: Some("not-an-arn".into()),
        ..Default::default()
    };
    assert_eq!(
        f.fetch(&group("eu-west-1", bad_role))
            .await
            .unwrap_err()
            .reason
            .as_str(),
        "InvalidSpec"
    );
    let bad_region = group("eu-west-1.evil.example", AwsAuth::default());
    assert_eq!(
        f.fetch(&bad_region).await.unwrap_err().reason.as_str(),
        "InvalidSpec"
    );

    emu.set_fault(Fault::Throttle, None);
    let err = f
        .fetch(&group("eu-west-1", AwsAuth::default()))
        .await
        .unwrap_err();
    assert_eq!(err.reason.as_str(), "Throttled");
    emu.set_fault(Fault::AccessDenied, None);
    let err = f
        .fetch(&group("eu-west-1", AwsAuth::default()))
        .await
        .unwrap_err();
    assert_eq!(err.reason.as_str(), "AwsError");
    assert!(err.message.contains("ecr:GetAuthorizationToken"), "{err}");
    assert!(!err.message.contains("default-secret"));
}
