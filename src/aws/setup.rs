//! Wiring in one place: from the environment (and the optional caller-fed Secret) to the
//! transport, endpoints and default credential provider the operator needs. Roles are
//! chained per ECRPullSecret on top of this provider (`app::tokens`).

use super::credentials::{
    AwsContext, CredentialProvider, CredentialSource, SecretCredentials, SourceKind,
};
use super::endpoint::{validate_region, Endpoints};
use super::env::AwsEnv;
use super::error::AwsError;
use super::http::{AwsHttp, HttpConfig};
use std::sync::Arc;

/// What `setup` asks for beyond the environment.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// Region for STS (and the default ECR region).
    pub region: String,
    pub source: SourceKind,
    pub http: HttpConfig,
}

/// The ready-to-use AWS side.
#[derive(Clone, Debug)]
pub struct Aws {
    pub ctx: AwsContext,
    pub provider: Arc<CredentialProvider>,
}

// === impl Aws ===

impl Aws {
    /// Builds the transport, endpoints and the default credential source.
    pub fn setup(
        env: &AwsEnv,
        settings: AwsSettings,
        secret: Option<SecretCredentials>,
    ) -> Result<Self, AwsError> {
        validate_region(&settings.region)?;
        let http = AwsHttp::new(env, settings.http)?;
        let endpoints = Endpoints::from_env(env)?;
        let ctx = AwsContext {
            http,
            endpoints,
            region: settings.region,
        };
        let source = CredentialSource::from_env(settings.source, env, secret)?;
        let provider = Arc::new(CredentialProvider::new(source, ctx.clone()));
        Ok(Self { ctx, provider })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(region: &str) -> AwsSettings {
        AwsSettings {
            region: region.into(),
            source: SourceKind::Auto,
            http: HttpConfig::default(),
        }
    }

    #[tokio::test]
    async fn setup_builds_the_default_source_from_the_environment() {
        let env = AwsEnv::from_pairs(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        let aws = Aws::setup(&env, settings("eu-west-1"), None).unwrap();
        assert_eq!(aws.provider.identity(), "env:AKIAENV");
    }

    #[tokio::test]
    async fn setup_refuses_bad_regions_and_overrides() {
        assert!(Aws::setup(&AwsEnv::default(), settings("not a region"), None).is_err());
        let env = AwsEnv::from_pairs(&[("AWS_ENDPOINT_URL_ECR", "ftp://x")]);
        assert!(Aws::setup(&env, settings("eu-west-1"), None).is_err());
    }
}
