//! Where AWS credentials come from, in the order the AWS SDKs try them, and a provider
//! that caches temporary credentials until shortly before they expire, with one refresh
//! shared by every concurrent caller.
//!
//! Sources: a Kubernetes Secret (fed by the caller), the environment, IRSA web identity,
//! the container endpoint (EKS Pod Identity / ECS), EC2 IMDSv2, IAM Roles Anywhere (only
//! when chosen: the SDKs' chain does not have it); and role chaining with AssumeRole on
//! top of any of them.

pub(crate) mod container;
pub(crate) mod imds;
pub(crate) mod secret;

pub(crate) use container::ContainerSource;
pub(crate) use imds::ImdsSource;
pub(crate) use secret::{credentials_from_secret_data, SecretCredentials, SecretState};

use super::context::AwsContext;
use super::env::AwsEnv;
use super::error::AwsError;
use super::rolesanywhere::{RolesAnywhereSource, SecretRolesAnywhere};
use super::sts::{self, AssumeRoleParams, DEFAULT_SESSION_NAME};
use aws_credential_types::Credentials;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Refresh this long before expiry: a token fetched with credentials that expire during
/// the call fails, and STS credentials last at least 15 minutes.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (+ AWS_ROLE_SESSION_NAME).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WebIdentitySource {
    pub role_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
}

/// One credential source.
#[derive(Clone, Debug)]
pub(crate) enum CredentialSource {
    Secret(SecretCredentials),
    /// Static keys (AWS_ACCESS_KEY_ID and friends).
    Environment(Credentials),
    WebIdentity(WebIdentitySource),
    Container(ContainerSource),
    Imds(ImdsSource),
    /// A CreateSession signed with a device certificate's key.
    RolesAnywhere(RolesAnywhereSource),
    /// The same, with the certificate of a watched `kubernetes.io/tls` Secret (per CR).
    RolesAnywhereSecret(SecretRolesAnywhere),
    /// Role chaining: AssumeRole signed with the base provider's credentials.
    AssumeRole {
        base: Arc<CredentialProvider>,
        params: AssumeRoleParams,
    },
}

/// Which source to use, as a user writes it in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// The SDK order: Secret (if configured), environment, web identity, container, IMDS.
    Auto,
    Secret,
    Environment,
    WebIdentity,
    Container,
    Imds,
    RolesAnywhere,
}

impl FromStr for SourceKind {
    type Err = AwsError;
    fn from_str(s: &str) -> Result<Self, AwsError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "secret" => Ok(Self::Secret),
            "env" | "environment" => Ok(Self::Environment),
            "web-identity" | "irsa" => Ok(Self::WebIdentity),
            "container" | "pod-identity" => Ok(Self::Container),
            "imds" | "instance-profile" => Ok(Self::Imds),
            "roles-anywhere" => Ok(Self::RolesAnywhere),
            other => Err(AwsError::config(
                "credential source",
                format!("{other:?} is not one of auto, secret, env, web-identity, container, imds, roles-anywhere"),
            )),
        }
    }
}

// === impl CredentialSource ===

impl CredentialSource {
    /// Picks the source for `kind` from the environment; `secret` is the caller-fed Secret
    /// source, if one is configured.
    pub(crate) fn from_env(
        kind: SourceKind,
        env: &AwsEnv,
        secret: Option<SecretCredentials>,
    ) -> Result<Self, AwsError> {
        let missing = |what: &str| AwsError::config("credential source", what.to_string());
        match kind {
            SourceKind::Secret => secret.map(Self::Secret).ok_or_else(|| missing("source secret chosen but no credentials Secret is configured")),
            SourceKind::Environment => {
                environment_credentials(env)?.map(Self::Environment).ok_or_else(|| missing("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"))
            }
            SourceKind::WebIdentity => web_identity(env)?
                .map(Self::WebIdentity)
                .ok_or_else(|| missing("AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set (is IRSA configured on the ServiceAccount?)")),
            SourceKind::Container => ContainerSource::from_env(env)?
                .map(Self::Container)
                .ok_or_else(|| missing("AWS_CONTAINER_CREDENTIALS_FULL_URI is not set (is EKS Pod Identity associated?)")),
            SourceKind::Imds => ImdsSource::from_env(env).map(Self::Imds).ok_or_else(|| missing("AWS_EC2_METADATA_DISABLED is true")),
            SourceKind::RolesAnywhere => RolesAnywhereSource::from_env(env)?
                .map(Self::RolesAnywhere)
                .ok_or_else(|| missing("AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN, _PROFILE_ARN, _ROLE_ARN, _CERTIFICATE and _PRIVATE_KEY are not set")),
            SourceKind::Auto => {
                if let Some(s) = secret {
                    return Ok(Self::Secret(s));
                }
                if let Some(c) = environment_credentials(env)? {
                    return Ok(Self::Environment(c));
                }
                if let Some(w) = web_identity(env)? {
                    return Ok(Self::WebIdentity(w));
                }
                if let Some(c) = ContainerSource::from_env(env)? {
                    return Ok(Self::Container(c));
                }
                ImdsSource::from_env(env).map(Self::Imds).ok_or_else(|| {
                    missing("no credentials found: set a credentials Secret, AWS_ACCESS_KEY_ID, IRSA, Pod Identity, or enable IMDS")
                })
            }
        }
    }

    /// A stable description of whose credentials these are (cache keys, logs); never a
    /// secret. The access key id is not secret.
    pub(crate) fn identity(&self) -> String {
        match self {
            Self::Secret(s) => format!("secret:{}", s.origin()),
            Self::Environment(c) => format!("env:{}", c.access_key_id()),
            Self::WebIdentity(w) => format!("web-identity:{}", w.role_arn),
            Self::Container(c) => format!("container:{}", c.uri),
            Self::Imds(i) => format!("imds:{}", i.endpoint),
            Self::RolesAnywhere(r) => r.identity(),
            Self::RolesAnywhereSecret(r) => r.identity(),
            Self::AssumeRole { base, params } => {
                format!("{}>assume-role:{}", base.identity(), params.role_arn)
            }
        }
    }

    /// A short name for messages and metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::Environment(_) => "environment",
            Self::WebIdentity(_) => "web-identity",
            Self::Container(_) => "container",
            Self::Imds(_) => "imds",
            Self::RolesAnywhere(_) | Self::RolesAnywhereSecret(_) => "roles-anywhere",
            Self::AssumeRole { .. } => "assume-role",
        }
    }

    async fn load(&self, ctx: &AwsContext) -> Result<Credentials, AwsError> {
        match self {
            Self::Secret(s) => s.current(),
            Self::Environment(c) => Ok(c.clone()),
            Self::WebIdentity(w) => {
                let token = tokio::fs::read_to_string(&w.token_file)
                    .await
                    .map_err(|e| {
                        AwsError::credentials(
                            "web identity",
                            format!("reading {} failed: {e}", w.token_file.display()),
                        )
                    })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(AwsError::credentials(
                        "web identity",
                        format!("{} is empty", w.token_file.display()),
                    ));
                }
                let endpoint = ctx.endpoints.sts(&ctx.region)?;
                sts::assume_role_with_web_identity(
                    &ctx.http,
                    &endpoint,
                    &w.role_arn,
                    &w.session_name,
                    token,
                )
                .await
            }
            Self::Container(c) => c.load(&ctx.http).await,
            Self::Imds(i) => i.load(&ctx.http).await,
            Self::RolesAnywhere(r) => r.load(ctx).await,
            Self::RolesAnywhereSecret(r) => r.load(ctx).await,
            Self::AssumeRole { base, params } => {
                let base_credentials = base.credentials().await?;
                let endpoint = ctx.endpoints.sts(&ctx.region)?;
                sts::assume_role(&ctx.http, &endpoint, &base_credentials, params).await
            }
        }
    }
}

fn environment_credentials(env: &AwsEnv) -> Result<Option<Credentials>, AwsError> {
    match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Ok(Some(Credentials::new(
            id,
            secret,
            env.get("AWS_SESSION_TOKEN").map(str::to_string),
            None,
            "environment",
        ))),
        (Some(_), None) => Err(AwsError::config(
            "AWS_SECRET_ACCESS_KEY",
            "is not set but AWS_ACCESS_KEY_ID is",
        )),
        (None, Some(_)) => Err(AwsError::config(
            "AWS_ACCESS_KEY_ID",
            "is not set but AWS_SECRET_ACCESS_KEY is",
        )),
        (None, None) => Ok(None),
    }
}

fn web_identity(env: &AwsEnv) -> Result<Option<WebIdentitySource>, AwsError> {
    let (Some(role_arn), Some(file)) = (
        env.get("AWS_ROLE_ARN"),
        env.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
    ) else {
        return Ok(None);
    };
    sts::validate_role_arn(role_arn)?;
    let session_name = env
        .get("AWS_ROLE_SESSION_NAME")
        .unwrap_or(DEFAULT_SESSION_NAME)
        .to_string();
    sts::validate_session_name(&session_name)?;
    Ok(Some(WebIdentitySource {
        role_arn: role_arn.to_string(),
        token_file: PathBuf::from(file),
        session_name,
    }))
}

/// A credential source with a cache. Concurrent callers wait on one lock, so an expired
/// entry is refreshed by one call that all of them share.
#[derive(Debug)]
pub(crate) struct CredentialProvider {
    source: CredentialSource,
    ctx: AwsContext,
    /// The credentials, and the [`CredentialProvider::rotating_key`] they were had with.
    cache: tokio::sync::Mutex<Option<(Credentials, Option<String>)>>,
    loads: AtomicU64,
}

// === impl CredentialProvider ===

impl CredentialProvider {
    pub(crate) fn new(source: CredentialSource, ctx: AwsContext) -> Self {
        Self {
            source,
            ctx,
            cache: tokio::sync::Mutex::new(None),
            loads: AtomicU64::new(0),
        }
    }

    /// Role chaining on top of `base`, in the same context.
    pub(crate) fn assume_role(base: Arc<CredentialProvider>, params: AssumeRoleParams) -> Self {
        let ctx = base.ctx.clone();
        Self::new(CredentialSource::AssumeRole { base, params }, ctx)
    }

    pub(crate) fn source(&self) -> &CredentialSource {
        &self.source
    }

    pub(crate) fn identity(&self) -> String {
        self.source.identity()
    }

    /// The access key id of a Secret source right now, or the fingerprint of a Roles
    /// Anywhere Secret's certificate, so caches notice a rotated key or a renewed
    /// certificate; None for other sources (their identity does not change under us).
    pub(crate) fn rotating_key(&self) -> Option<String> {
        match &self.source {
            CredentialSource::Secret(s) => s.access_key_id(),
            CredentialSource::RolesAnywhereSecret(r) => r.certificate.fingerprint(),
            _ => None,
        }
    }

    /// Waits (at most `within`) until a credentials Secret source, here or under an
    /// assumed role, has been read once; other sources are ready at once.
    pub(crate) async fn first_read(&self, within: std::time::Duration) {
        match &self.source {
            CredentialSource::Secret(s) => s.first_version(within).await,
            CredentialSource::RolesAnywhereSecret(r) => r.certificate.first_version(within).await,
            CredentialSource::AssumeRole { base, .. } => Box::pin(base.first_read(within)).await,
            _ => {}
        }
    }

    /// How many times the source was really asked (tests, metrics).
    #[cfg(test)]
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Current credentials, from cache while they have more than [`REFRESH_MARGIN`] left
    /// and the source's rotating key (a renewed certificate) has not changed since.
    pub(crate) async fn credentials(&self) -> Result<Credentials, AwsError> {
        if let CredentialSource::Secret(s) = &self.source {
            // Always the latest published version: a rotated key applies at once.
            self.loads.fetch_add(1, Ordering::Relaxed);
            return s.current();
        }
        let mut cache = self.cache.lock().await;
        let key = self.rotating_key();
        if let Some((c, _)) = cache
            .as_ref()
            .filter(|(c, k)| *k == key && is_fresh(c, SystemTime::now()))
        {
            return Ok(c.clone());
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        let fresh = Box::pin(self.source.load(&self.ctx)).await?;
        *cache = Some((fresh.clone(), key));
        Ok(fresh)
    }

    /// Drops the cached credentials (after an ExpiredToken answer).
    pub(crate) async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
}

/// Fresh when there is no expiry (static keys) or more than the margin is left.
pub(crate) fn is_fresh(c: &Credentials, now: SystemTime) -> bool {
    match c.expiry() {
        None => true,
        Some(exp) => exp
            .duration_since(now)
            .is_ok_and(|left| left > REFRESH_MARGIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_keys() -> AwsEnv {
        AwsEnv::from_pairs(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ])
    }

    #[test]
    fn auto_follows_the_sdk_order() {
        let irsa = [
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
        ];
        let pod = [(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        )];
        let all: Vec<_> = [
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]
        .into_iter()
        .chain(irsa)
        .chain(pod)
        .collect();
        let (_tx, secret) = SecretCredentials::channel("ns/keys");
        let pick = |pairs: &[(&str, &str)], secret: Option<SecretCredentials>| {
            CredentialSource::from_env(SourceKind::Auto, &AwsEnv::from_pairs(pairs), secret)
                .unwrap()
                .name()
        };
        assert_eq!(pick(&all, Some(secret)), "secret");
        assert_eq!(pick(&all, None), "environment");
        assert_eq!(pick(&all[2..], None), "web-identity");
        assert_eq!(pick(&pod, None), "container");
        assert_eq!(pick(&[], None), "imds");
        let err = CredentialSource::from_env(
            SourceKind::Auto,
            &AwsEnv::from_pairs(&[("AWS_EC2_METADATA_DISABLED", "true")]),
            None,
        );
        assert!(err.is_err());
    }

    #[test]
    fn explicit_kind_ignores_other_sources() {
        let env = AwsEnv::from_pairs(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/"),
        ]);
        let s = CredentialSource::from_env(SourceKind::Container, &env, None).unwrap();
        assert_eq!(s.name(), "container");
        let err = CredentialSource::from_env(SourceKind::WebIdentity, &env, None).unwrap_err();
        assert!(err.to_string().contains("AWS_ROLE_ARN"), "{err}");
        assert_eq!(
            "irsa".parse::<SourceKind>().unwrap(),
            SourceKind::WebIdentity
        );
        assert!("ldap".parse::<SourceKind>().is_err());
        assert_eq!(
            "roles-anywhere".parse::<SourceKind>().unwrap(),
            SourceKind::RolesAnywhere
        );
        let err = CredentialSource::from_env(SourceKind::RolesAnywhere, &env, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN"),
            "{err}"
        );
    }

    #[test]
    fn auto_never_picks_roles_anywhere() {
        let env = AwsEnv::from_pairs(&[
            (
                "AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN",
                "arn:aws:rolesanywhere:eu-west-1:1:trust-anchor/t",
            ),
            (
                "AWS_ROLESANYWHERE_PROFILE_ARN",
                "arn:aws:rolesanywhere:eu-west-1:1:profile/p",
            ),
            ("AWS_ROLESANYWHERE_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_ROLESANYWHERE_CERTIFICATE", "/c"),
            ("AWS_ROLESANYWHERE_PRIVATE_KEY", "/k"),
        ]);
        let s = CredentialSource::from_env(SourceKind::Auto, &env, None).unwrap();
        assert_eq!(s.name(), "imds");
        let s = CredentialSource::from_env(SourceKind::RolesAnywhere, &env, None).unwrap();
        assert_eq!(s.name(), "roles-anywhere");
    }

    #[test]
    fn half_set_keys_and_bad_session_names_are_config_errors() {
        let env = AwsEnv::from_pairs(&[("AWS_ACCESS_KEY_ID", "AKIA")]);
        assert!(CredentialSource::from_env(SourceKind::Auto, &env, None).is_err());
        let env = AwsEnv::from_pairs(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_SESSION_NAME", "has space"),
        ]);
        assert!(CredentialSource::from_env(SourceKind::Auto, &env, None).is_err());
    }

    #[test]
    fn identity_names_the_principal_without_secrets() {
        let s = CredentialSource::from_env(SourceKind::Environment, &env_keys(), None).unwrap();
        assert_eq!(s.identity(), "env:AKIAENV");
        assert!(!format!("{s:?}").contains("\"s\""));
    }

    #[test]
    fn credentials_are_fresh_until_five_minutes_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let with_expiry = |left: u64| {
            Credentials::new("A", "s", None, Some(now + Duration::from_secs(left)), "t")
        };
        assert!(is_fresh(&Credentials::new("A", "s", None, None, "t"), now));
        assert!(is_fresh(&with_expiry(301), now));
        assert!(!is_fresh(&with_expiry(300), now));
        assert!(!is_fresh(
            &Credentials::new("A", "s", None, Some(now - Duration::from_secs(1)), "t"),
            now
        ));
    }
}
