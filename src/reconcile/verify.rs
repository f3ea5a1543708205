//! Registry verification: each token is shown once to each registry it serves
//! (`GET /v2/`), however many namespaces and CRs share it, and the answer is kept for
//! the token's life. A failed check is asked again with backoff (30 s doubling to 30 min),
//! never per reconcile, so a down registry is not hammered by a busy cluster.
//!
//! The check itself is the `aws::registry` client, adapted in `app`; here it is only a
//! function, so the cache and the status are tested without a network.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::tokens::{saturating_add, RegistryToken};

/// A registry's answer to a token. The strings are condition reasons and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// 200 to `GET /v2/`: pulls will authenticate.
    Verified,
    /// 401: the registry refused the token.
    Unauthorized,
    /// 403: the token is valid, the principal may not pull.
    Forbidden,
    /// The registry's certificate is not trusted.
    TlsError,
    /// No answer (DNS, TCP, proxy, timeout).
    Unreachable,
    /// An answer no registry gives.
    UnexpectedAnswer,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Verified => "Verified",
            Verdict::Unauthorized => "Unauthorized",
            Verdict::Forbidden => "Forbidden",
            Verdict::TlsError => "TLSError",
            Verdict::Unreachable => "Unreachable",
            Verdict::UnexpectedAnswer => "UnexpectedAnswer",
        }
    }
}

/// One host's last check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCheck {
    pub host: String,
    pub verdict: Verdict,
    /// Safe to show: never holds the token.
    pub message: String,
    pub checked_at: OffsetDateTime,
    /// When a failed check will be made again; `None` after a success.
    pub retry_at: Option<OffsetDateTime>,
}

/// What a check answers: the verdict and a message.
pub type CheckFuture = Pin<Box<dyn Future<Output = (Verdict, String)> + Send>>;
/// Checks `host` with a token.
pub type CheckFn = Arc<dyn Fn(String, Arc<RegistryToken>) -> CheckFuture + Send + Sync>;

/// The first retry of a failed check, doubled per failure up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(30);
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// The verification cache, shared by every reconcile.
pub struct Verifier {
    check: Option<CheckFn>,
    /// By (host, token fingerprint): the token's expiry (to prune) and its slot.
    slots: Mutex<HashMap<(String, u64), (OffsetDateTime, SharedSlot)>>,
}

/// One (host, token)'s checks; callers wait on it so one check serves them all.
type SharedSlot = Arc<tokio::sync::Mutex<Slot>>;

#[derive(Default)]
struct Slot {
    last: Option<HostCheck>,
    failures: u32,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

// === impl Verifier ===

impl Verifier {
    pub fn new(check: CheckFn) -> Self {
        Verifier {
            check: Some(check),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// `--verify-registries=false`: nothing is checked.
    pub fn disabled() -> Self {
        Verifier {
            check: None,
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.check.is_some()
    }

    /// `host`'s answer to `token`: asked once per token; after a failure, asked again
    /// when its backoff has passed. Callers for one (host, token) wait for one check.
    /// `None` when verification is off.
    pub async fn verify(
        &self,
        host: &str,
        token: &Arc<RegistryToken>,
        now: OffsetDateTime,
    ) -> Option<HostCheck> {
        let check = self.check.as_ref()?;
        let slot = self.slot(host, token, now);
        let mut slot = slot.lock().await;
        if let Some(last) = &slot.last {
            match last.retry_at {
                None => return Some(last.clone()),
                Some(at) if now < at => return Some(last.clone()),
                Some(_) => {}
            }
        }
        let (verdict, message) = check(host.to_string(), token.clone()).await;
        crate::metrics::registry_check(verdict.as_str());
        let checked_at = OffsetDateTime::now_utc();
        let retry_at = if verdict == Verdict::Verified {
            slot.failures = 0;
            None
        } else {
            slot.failures = slot.failures.saturating_add(1);
            Some(saturating_add(checked_at, backoff(slot.failures)))
        };
        let result = HostCheck {
            host: host.to_string(),
            verdict,
            message,
            checked_at,
            retry_at,
        };
        slot.last = Some(result.clone());
        Some(result)
    }

    /// The slot of (host, token), dropping those of expired tokens on the way: the map
    /// holds at most hosts x live tokens.
    fn slot(&self, host: &str, token: &RegistryToken, now: OffsetDateTime) -> SharedSlot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|_, (expires_at, _)| *expires_at > now);
        slots
            .entry((host.to_string(), fingerprint(token)))
            .or_insert_with(|| (token.expires_at, Arc::default()))
            .1
            .clone()
    }
}

/// Tells tokens apart without keeping a copy of the credential as a key.
fn fingerprint(token: &RegistryToken) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.auth.hash(&mut hasher);
    token.fetched_at.hash(&mut hasher);
    hasher.finish()
}

/// The wait after the `failures`-th failure in a row.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn token(auth: &str) -> Arc<RegistryToken> {
        let now = OffsetDateTime::now_utc();
        Arc::new(RegistryToken {
            username: "AWS".into(),
            password: "p".into(),
            auth: auth.into(),
            expires_at: now + time::Duration::hours(12),
            fetched_at: now,
            registry_host: None,
        })
    }

    fn counting(verdict: Verdict) -> (Verifier, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let check: CheckFn = Arc::new(move |_host, _token| {
            seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { (verdict, String::new()) })
        });
        (Verifier::new(check), calls)
    }

    #[tokio::test]
    async fn a_token_is_checked_once_per_host_however_often_asked() {
        let (verifier, calls) = counting(Verdict::Verified);
        let t = token("a");
        let now = OffsetDateTime::now_utc();
        for _ in 0..5 {
            let c = verifier.verify("h1", &t, now).await.unwrap();
            assert_eq!(c.verdict, Verdict::Verified);
            assert_eq!(c.retry_at, None);
        }
        verifier.verify("h2", &t, now).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        verifier.verify("h1", &token("b"), now).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "a new token is checked again"
        );
    }

    #[tokio::test]
    async fn failures_are_asked_again_only_after_a_growing_backoff() {
        let (verifier, calls) = counting(Verdict::Unreachable);
        let t = token("a");
        let now = OffsetDateTime::now_utc();
        let first = verifier.verify("h", &t, now).await.unwrap();
        let retry = first.retry_at.unwrap();
        assert!(retry - first.checked_at >= time::Duration::seconds(30));
        verifier.verify("h", &t, now).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "inside the backoff: cached"
        );
        let second = verifier.verify("h", &t, retry).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(second.retry_at.unwrap() - second.checked_at >= time::Duration::seconds(60));
        assert_eq!(backoff(30), RETRY_MAX);
    }

    #[tokio::test]
    async fn disabled_checks_nothing_and_expired_tokens_are_forgotten() {
        assert!(Verifier::disabled()
            .verify("h", &token("a"), OffsetDateTime::now_utc())
            .await
            .is_none());
        let (verifier, _) = counting(Verdict::Verified);
        let t = token("a");
        verifier.verify("h", &t, OffsetDateTime::now_utc()).await;
        let later = t.expires_at + time::Duration::seconds(1);
        verifier.verify("h", &token("b"), later).await;
        assert_eq!(verifier.slots.lock().unwrap().len(), 1);
    }
}
