//! Wiring in one place: from the environment (and the optional caller-fed Secret) to the
//! transport, endpoints and default credential provider the operator needs. Roles are
//! chained per ECRPullSecret on top of this provider (`app::tokens`).

use super::context::{AwsContext, CertificateObserver};
use super::credentials::{CredentialProvider, CredentialSource, SecretCredentials, SourceKind};
use super::endpoint::{validate_region, Endpoints};
use super::env::AwsEnv;
use super::error::AwsError;
use super::http::{AwsHttp, HttpConfig};
use super::registry::RegistryClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// What `setup` asks for beyond the environment.
#[derive(Clone, Debug)]
pub(crate) struct AwsSettings {
    /// Region for STS (and the default ECR region).
    pub region: String,
    pub source: SourceKind,
    pub http: HttpConfig,
    /// `ECR_REGISTRY_ENDPOINT_URL` may be plain http to a non-loopback host.
    pub allow_plain_http_registry: bool,
    /// Told each operator-wide device certificate's `notAfter` (for the expiry metric).
    pub certificate_seen: CertificateObserver,
}

/// The ready-to-use AWS side.
#[derive(Clone, Debug)]
pub(crate) struct Aws {
    pub ctx: AwsContext,
    pub provider: Arc<CredentialProvider>,
    /// The registries' `/v2/` checks, over the same transport with a shorter timeout.
    pub registry: RegistryClient,
}

// === impl Aws ===

impl Aws {
    /// Builds the transport, endpoints and the default credential source.
    pub(crate) fn setup(
        env: &AwsEnv,
        settings: AwsSettings,
        secret: Option<SecretCredentials>,
    ) -> Result<Self, AwsError> {
        validate_region(&settings.region)?;
        let mut http_config = settings.http;
        if let Some(path) = env.get("AWS_CA_BUNDLE") {
            http_config.extra_roots.extend(ca_bundle(path)?);
        }
        let http = AwsHttp::new(env, http_config)?;
        let registry = RegistryClient::configure(
            http.clone(),
            env.get("ECR_REGISTRY_ENDPOINT_URL"),
            settings.allow_plain_http_registry,
        )?;
        let endpoints = Endpoints::from_env(env)?;
        let ctx = AwsContext {
            http,
            endpoints,
            region: settings.region,
            certificate_seen: settings.certificate_seen,
        };
        let source = CredentialSource::from_env(settings.source, env, secret)?;
        let provider = Arc::new(CredentialProvider::new(source, ctx.clone()));
        Ok(Self {
            ctx,
            provider,
            registry,
        })
    }
}

/// `AWS_CA_BUNDLE`, the AWS SDKs' extra trust: PEM certificates added to the webpki roots
/// (a TLS-intercepting proxy's CA, a private registry mirror's).
fn ca_bundle(path: &str) -> Result<Vec<CertificateDer<'static>>, AwsError> {
    let pem = std::fs::read(path)
        .map_err(|e| AwsError::config("AWS_CA_BUNDLE", format!("reading {path}: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AwsError::config("AWS_CA_BUNDLE", format!("{path}: invalid PEM: {e:?}")))?;
    if certs.is_empty() {
        return Err(AwsError::config(
            "AWS_CA_BUNDLE",
            format!("{path} holds no certificate"),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(region: &str) -> AwsSettings {
        AwsSettings {
            region: region.into(),
            source: SourceKind::Auto,
            http: HttpConfig::default(),
            allow_plain_http_registry: false,
            certificate_seen: CertificateObserver::default(),
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
    async fn a_missing_or_empty_ca_bundle_stops_setup_with_its_name() {
        let env = AwsEnv::from_pairs(&[("AWS_CA_BUNDLE", "/nonexistent/ca.pem")]);
        let err = Aws::setup(&env, settings("eu-west-1"), None).unwrap_err();
        assert!(err.to_string().contains("AWS_CA_BUNDLE"), "{err}");
        let empty = std::env::temp_dir().join(format!("empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let env = AwsEnv::from_pairs(&[("AWS_CA_BUNDLE", empty.to_str().unwrap())]);
        let err = Aws::setup(&env, settings("eu-west-1"), None).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        let _ = std::fs::remove_file(empty);
    }

    #[tokio::test]
    async fn setup_refuses_bad_regions_and_overrides() {
        assert!(Aws::setup(&AwsEnv::default(), settings("not a region"), None).is_err());
        let env = AwsEnv::from_pairs(&[("AWS_ENDPOINT_URL_ECR", "ftp://x")]);
        assert!(Aws::setup(&env, settings("eu-west-1"), None).is_err());
    }
}
