//! The AWS token adapter: the reconciler's token cache (`reconcile::tokens`) asks for a
//! token per group; this picks the credentials (the operator's default chain, or a per-CR
//! Secret), chains the group's role on top, and calls ECR or ECR Public through `aws`,
//! which knows nothing of CRs. Caching and single flight are the token cache's job.

use crate::aws::credentials::{CredentialProvider, CredentialSource, SecretCredentials};
use crate::aws::ecr::EcrClient;
use crate::aws::error::{AwsError, ErrorKind};
use crate::aws::registry::{CheckError, RegistryClient};
use crate::aws::rolesanywhere::{SecretCertificate, SecretRolesAnywhere, SessionParams};
use crate::aws::setup::Aws;
use crate::aws::sts::AssumeRoleParams;
use crate::aws::token::fetch_token;
use crate::aws::x509::CertificateError;
use crate::reconcile::decide::rolesanywhere;
use crate::reconcile::decide::spec::{AwsAuth, RolesAnywhereSpec, SecretRef};
use crate::reconcile::tokens::{
    describe_source, FetchToken, RegistryToken, TokenError, TokenGroup,
};
use crate::reconcile::verify::{CheckFn, Verdict, Verifier};
use crate::reconcile::vocab::Reason;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// How long a fetch waits for a just-watched credentials Secret to be read once.
pub(crate) const SECRET_FIRST_READ: std::time::Duration = std::time::Duration::from_secs(5);

/// Finds the watched credentials Secret a CR names (the Kubernetes side owns the watch).
pub(crate) type SecretLookup = Arc<dyn Fn(&SecretRef) -> Option<SecretCredentials> + Send + Sync>;
/// Finds the watched certificate Secret a CR's `rolesAnywhere` names.
pub(crate) type CertificateLookup =
    Arc<dyn Fn(&SecretRef) -> Option<SecretCertificate> + Send + Sync>;

/// Implements [`FetchToken`]; providers are built once per distinct `AwsAuth` and kept, so
/// assumed-role credentials are cached across refreshes.
pub(crate) struct AwsTokenFetcher {
    aws: Aws,
    ecr: EcrClient,
    secrets: SecretLookup,
    certificates: CertificateLookup,
    providers: Mutex<HashMap<AwsAuth, Arc<CredentialProvider>>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for AwsTokenFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsTokenFetcher")
            .field("default", &self.aws.provider.identity())
            .finish_non_exhaustive()
    }
}

// === impl AwsTokenFetcher ===

impl AwsTokenFetcher {
    pub(crate) fn new(aws: Aws, secrets: SecretLookup) -> Self {
        let ecr = EcrClient::new(aws.ctx.http.clone(), aws.ctx.endpoints.clone());
        Self {
            aws,
            ecr,
            secrets,
            certificates: Arc::new(|_: &SecretRef| None),
            providers: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Where per-CR Roles Anywhere certificates come from (none by default).
    #[must_use]
    pub(crate) fn with_certificates(mut self, certificates: CertificateLookup) -> Self {
        self.certificates = certificates;
        self
    }

    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_ecr(mut self, ecr: EcrClient) -> Self {
        self.ecr = ecr;
        self
    }

    /// How many credential providers are kept (one per identity in use).
    pub(crate) fn providers(&self) -> usize {
        self.providers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// ECR calls made, retries and reloads included.
    #[cfg(test)]
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The provider for `auth`: base (default chain or the CR's Secret), then its role.
    pub(crate) fn provider_for(
        &self,
        auth: &AwsAuth,
    ) -> Result<Arc<CredentialProvider>, TokenError> {
        let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = providers.get(auth) {
            return Ok(p.clone());
        }
        let base = match (&auth.credentials_secret_ref, &auth.roles_anywhere) {
            (_, Some(ra)) => Arc::new(CredentialProvider::new(
                CredentialSource::RolesAnywhereSecret(self.roles_anywhere(ra)?),
                self.aws.ctx.clone(),
            )),
            (None, None) => self.aws.provider.clone(),
            (Some(r), None) => {
                let secret = (self.secrets)(r).ok_or_else(|| TokenError {
                    reason: Reason::CredentialsMissing,
                    message: format!(
                        "credentials Secret {}/{} is not known to the operator",
                        r.namespace, r.name
                    ),
                })?;
                Arc::new(CredentialProvider::new(
                    CredentialSource::Secret(secret),
                    self.aws.ctx.clone(),
                ))
            }
        };
        let provider = match &auth.role_arn {
            None => base,
            Some(role) => {
                let params =
                    AssumeRoleParams::new(role.as_str(), auth.role_session_name.as_deref())
                        .map_err(|e| token_error(&e))?
                        .with_external_id(auth.external_id.clone());
                Arc::new(CredentialProvider::assume_role(base, params))
            }
        };
        providers.insert(auth.clone(), provider.clone());
        Ok(provider)
    }

    /// The per-CR Roles Anywhere source: the session the spec asks for, signed with its
    /// watched certificate Secret.
    fn roles_anywhere(&self, ra: &RolesAnywhereSpec) -> Result<SecretRolesAnywhere, TokenError> {
        // The spec was validated with the operator's role rules; this only reads it.
        let valid = rolesanywhere::validate(ra, |_| Ok(())).map_err(|e| TokenError {
            reason: Reason::InvalidSpec,
            message: e.to_string(),
        })?;
        let r = &ra.certificate_secret_ref;
        let certificate = (self.certificates)(r).ok_or_else(|| TokenError {
            reason: Reason::CredentialsMissing,
            message: format!(
                "certificate Secret {}/{} is not known to the operator",
                r.namespace, r.name
            ),
        })?;
        Ok(SecretRolesAnywhere {
            params: SessionParams {
                trust_anchor_arn: ra.trust_anchor_arn.clone(),
                profile_arn: ra.profile_arn.clone(),
                role_arn: ra.role_arn.clone(),
                duration_seconds: u32::try_from(valid.session.as_secs()).unwrap_or(u32::MAX),
            },
            region: valid.region,
            certificate,
        })
    }
}

impl FetchToken for AwsTokenFetcher {
    async fn fetch(&self, group: &TokenGroup) -> Result<RegistryToken, TokenError> {
        let provider = self.provider_for(&group.auth)?;
        let token = fetch_token(
            &self.ecr,
            &provider,
            &group.region,
            group.public,
            &self.calls,
        )
        .await
        .map_err(|e| token_error(&e))?;
        Ok(RegistryToken {
            username: token.username,
            password: token.password,
            auth: token.auth,
            expires_at: token.expires_at,
            fetched_at: OffsetDateTime::now_utc(),
            registry_host: Some(token.registry_host),
        })
    }

    /// A credentials Secret is watched from its first use: give the first list a moment
    /// instead of failing with "not read yet" (which flipped Ready with a Warning event
    /// on every new CR naming a Secret, and after every restart).
    async fn credentials_ready(&self, group: &TokenGroup) {
        if let Ok(provider) = self.provider_for(&group.auth) {
            provider.first_read(SECRET_FIRST_READ).await;
        }
    }

    fn credential_source(&self, auth: &AwsAuth) -> String {
        let operator = format!("operator ({})", self.aws.provider.source().name());
        describe_source(auth, &operator)
    }

    fn certificate_not_after(&self, auth: &AwsAuth) -> Option<OffsetDateTime> {
        let ra = auth.roles_anywhere.as_ref()?;
        (self.certificates)(&ra.certificate_secret_ref)?.not_after()
    }

    fn retain_identities(&self, in_use: &dyn Fn(&AwsAuth) -> bool) {
        let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        providers.retain(|auth, _| in_use(auth));
    }

    /// A hash of the access key id of a credentials Secret (the group's, or the operator's
    /// default one), or of a Roles Anywhere Secret's certificate, so the cache notices a
    /// rotated key or a renewed certificate. Other sources do not rotate under us; a role
    /// on top of either keeps its session until it expires.
    fn credentials_fingerprint(&self, group: &TokenGroup) -> Option<u64> {
        let key_id = self.provider_for(&group.auth).ok()?.rotating_key()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key_id.hash(&mut hasher);
        Some(hasher.finish())
    }
}

/// The reconciler's registry checks over `client` (the `aws` module's `/v2/` call).
pub(crate) fn registry_verifier(client: RegistryClient) -> Verifier {
    let check: CheckFn = Arc::new(move |host: String, token: Arc<RegistryToken>| {
        let client = client.clone();
        Box::pin(async move {
            match client.check(&host, &token.username, &token.password).await {
                Ok(()) => (Verdict::Verified, String::new()),
                Err(e) => {
                    let verdict = match &e {
                        CheckError::Unauthorized(_) => Verdict::Unauthorized,
                        CheckError::Forbidden(_) => Verdict::Forbidden,
                        CheckError::Unreachable(_) => Verdict::Unreachable,
                        CheckError::Tls(_) => Verdict::TlsError,
                        CheckError::UnexpectedAnswer(_) => Verdict::UnexpectedAnswer,
                    };
                    (verdict, e.to_string())
                }
            }
        })
    });
    Verifier::new(check)
}

/// Maps to the status condition reasons the reconciler uses. The message is the error's
/// Display, which never holds a secret.
pub(crate) fn token_error(e: &AwsError) -> TokenError {
    let reason = match e {
        AwsError::Credentials { .. } => Reason::CredentialsMissing,
        AwsError::Certificate(CertificateError::Expired { .. }) => Reason::CertificateExpired,
        AwsError::Certificate(CertificateError::NotYetValid { .. }) => {
            Reason::CertificateNotYetValid
        }
        // The operator-wide files could not be read: like a missing Secret.
        AwsError::Certificate(CertificateError::Read { .. }) => Reason::CredentialsMissing,
        // Unreadable, unsupported or mismatched: the message names what, never a byte.
        AwsError::Certificate(_) => Reason::CertificateInvalid,
        // A bad role ARN, session name or region in the CR.
        AwsError::Config { .. } => Reason::InvalidSpec,
        _ if e.kind() == Some(ErrorKind::Throttling) => Reason::Throttled,
        _ => Reason::AwsError,
    };
    TokenError {
        reason,
        message: e.to_string(),
    }
}
