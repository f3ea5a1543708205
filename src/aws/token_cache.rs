//! Registry tokens shared by everyone who needs the same one. ECR tokens are scoped to
//! (principal, region), not to a registry or namespace, so one GetAuthorizationToken per
//! group per refresh serves every pull secret in that group; concurrent callers of one key
//! wait for a single call (single flight).

use super::credentials::CredentialProvider;
use super::ecr::{AuthorizationToken, EcrClient};
use super::error::{AwsError, ErrorKind};
use aws_credential_types::Credentials;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// Refresh a token this long before it expires (ECR tokens live 12 hours).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(30 * 60);
/// A token that is already (nearly) expired when received (moto sends 2015 dates; a skewed
/// clock does too) is still reused this long, so callers do not hammer AWS in a loop.
pub const MIN_TOKEN_REUSE: Duration = Duration::from_secs(60);

/// Which token: whose credentials, in which region, private or public ECR. Equality and
/// hashing use the provider's identity (role chain included), not the pointer.
#[derive(Clone, Debug)]
pub struct TokenKey {
    pub provider: Arc<CredentialProvider>,
    pub identity: String,
    pub region: String,
    pub public: bool,
}

impl TokenKey {
    pub fn new(provider: Arc<CredentialProvider>, region: impl Into<String>, public: bool) -> Self {
        let identity = provider.identity();
        Self {
            provider,
            identity,
            region: region.into(),
            public,
        }
    }

    /// Public tokens ignore the region (ECR Public lives in us-east-1 only).
    fn parts(&self) -> (&str, &str, bool) {
        (
            &self.identity,
            if self.public { "" } else { &self.region },
            self.public,
        )
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}
impl Eq for TokenKey {}
impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

#[derive(Default)]
struct Slot {
    token: Option<Arc<AuthorizationToken>>,
    fetched_at: Option<Instant>,
    /// The Secret's access key id the token was fetched with.
    fetched_with: Option<String>,
}

/// The cache; share it behind an `Arc`.
pub struct TokenCache {
    ecr: EcrClient,
    slots: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Slot>>>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

// === impl TokenCache ===

impl TokenCache {
    pub fn new(ecr: EcrClient) -> Self {
        Self {
            ecr,
            slots: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// GetAuthorizationToken calls made so far (each retry attempt counts once per call).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The token for `key`, fetched if missing, near expiry, made with a rotated key, or
    /// if `force_refresh` (e.g. the registry rejected it). A forced refresh that waited
    /// behind another refresh which started after it reuses that result.
    pub async fn token(
        &self,
        key: &TokenKey,
        force_refresh: bool,
    ) -> Result<Arc<AuthorizationToken>, AwsError> {
        let asked_at = Instant::now();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        let rotating_key = key.provider.rotating_key();
        if let (Some(token), Some(fetched_at)) = (&slot.token, slot.fetched_at) {
            let same_key = slot.fetched_with == rotating_key;
            let fresh_enough = !force_refresh
                && is_usable(token, fetched_at, OffsetDateTime::now_utc(), Instant::now());
            let refreshed_meanwhile = force_refresh && fetched_at >= asked_at;
            if same_key && (fresh_enough || refreshed_meanwhile) {
                return Ok(token.clone());
            }
        }
        let token = Arc::new(self.fetch(key).await?);
        slot.token = Some(token.clone());
        slot.fetched_at = Some(Instant::now());
        slot.fetched_with = rotating_key;
        Ok(token)
    }

    /// Forgets every token of `key` (its CR was deleted, its credentials changed).
    pub fn forget(&self, key: &TokenKey) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn fetch(&self, key: &TokenKey) -> Result<AuthorizationToken, AwsError> {
        fetch_token(
            &self.ecr,
            &key.provider,
            &key.region,
            key.public,
            &self.calls,
        )
        .await
    }
}

/// One GetAuthorizationToken with `provider`'s credentials; when AWS says the session
/// credentials expired (revoked, or expired early), reload them once and try again.
/// `calls` counts the ECR calls made.
pub async fn fetch_token(
    ecr: &EcrClient,
    provider: &CredentialProvider,
    region: &str,
    public: bool,
    calls: &AtomicU64,
) -> Result<AuthorizationToken, AwsError> {
    let call = |credentials: Credentials| async move {
        calls.fetch_add(1, Ordering::Relaxed);
        if public {
            ecr.public_authorization_token(&credentials).await
        } else {
            ecr.authorization_token(&credentials, region).await
        }
    };
    let credentials = provider.credentials().await?;
    match call(credentials).await {
        Err(e) if e.kind() == Some(ErrorKind::ExpiredToken) => {
            provider.invalidate().await;
            call(provider.credentials().await?).await
        }
        other => other,
    }
}

/// A cached token is usable until [`TOKEN_REFRESH_MARGIN`] before its expiry, and in any
/// case for [`MIN_TOKEN_REUSE`] after it was fetched.
pub fn is_usable(
    token: &AuthorizationToken,
    fetched_at: Instant,
    now_wall: OffsetDateTime,
    now: Instant,
) -> bool {
    let margin = time::Duration::try_from(TOKEN_REFRESH_MARGIN).unwrap_or(time::Duration::ZERO);
    now_wall < token.expires_at - margin || now.duration_since(fetched_at) < MIN_TOKEN_REUSE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: OffsetDateTime) -> AuthorizationToken {
        AuthorizationToken {
            username: "AWS".into(),
            password: "p".into(),
            auth: "QVdTOnA=".into(),
            expires_at,
            proxy_endpoint: "https://h".into(),
            registry_host: "h".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_reused_until_the_margin_before_expiry() {
        let now_wall = OffsetDateTime::now_utc();
        let fetched = Instant::now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let t = token(now_wall + time::Duration::minutes(31));
        assert!(is_usable(&t, fetched, now_wall, Instant::now()));
        let t = token(now_wall + time::Duration::minutes(29));
        assert!(!is_usable(&t, fetched, now_wall, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn already_expired_tokens_are_held_for_a_minute_to_avoid_a_hot_loop() {
        let now_wall = OffsetDateTime::now_utc();
        let t = token(OffsetDateTime::from_unix_timestamp(1_430_000_000).unwrap());
        let fetched = Instant::now();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(is_usable(&t, fetched, now_wall, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!is_usable(&t, fetched, now_wall, Instant::now()));
    }
}
