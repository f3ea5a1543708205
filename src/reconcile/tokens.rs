//! ECR tokens shared per credential group: one call per (credentials, role, region) per
//! refresh, however many CRs and namespaces need it, and never a storm.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::decide::spec::AwsAuth;
pub(crate) use super::decide::token::{refresh_at, RegistryToken, TokenGroup};
use super::vocab::{saturating_add, Reason};
use crate::metrics::Metrics;

/// Why a token could not be had; `reason` is a status condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenError {
    /// `CredentialsMissing`, `CredentialsNotPermitted`, `AwsError`, `Throttled`, ...
    pub reason: Reason,
    /// Safe to show: never holds a credential.
    pub message: String,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for TokenError {}

/// One GetAuthorizationToken call (with whatever credential work it needs).
pub(crate) trait FetchToken: Send + Sync + 'static {
    fn fetch(
        &self,
        group: &TokenGroup,
    ) -> impl Future<Output = Result<RegistryToken, TokenError>> + Send;

    /// An opaque fingerprint of the credentials `group` would be fetched with right now,
    /// for sources that can change under us (a rotated credentials Secret). When it differs
    /// from the one a cached token was fetched with, the token is fetched again at once:
    /// the old key may already be deactivated. `None`: the source does not rotate.
    fn credentials_fingerprint(&self, _group: &TokenGroup) -> Option<u64> {
        None
    }

    /// Resolves when the credentials of `group` are known (a credentials Secret whose
    /// watch just started has been read once), so neither the fingerprint nor the fetch
    /// sees a source that merely has not loaded yet.
    fn credentials_ready(&self, _group: &TokenGroup) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Drops whatever is kept per identity (credential providers, assumed-role sessions)
    /// for the identities `in_use` rejects: they are CR-controlled, so what no CR uses
    /// any more must not stay.
    fn retain_identities(&self, _in_use: &dyn Fn(&AwsAuth) -> bool) {}

    /// Which credentials `auth` is served with, for the CR's status; never a secret.
    fn credential_source(&self, auth: &AwsAuth) -> String {
        describe_source(auth, "operator")
    }

    /// The notAfter of the Roles Anywhere certificate `auth` signs with, if it has one
    /// and it has been read (for the expiry metric).
    fn certificate_not_after(&self, _auth: &AwsAuth) -> Option<OffsetDateTime> {
        None
    }
}

/// `operator`, `credentialsSecretRef <ns>/<name>` or `rolesAnywhere <ns>/<name>`, then
/// `> roleArn <arn>` for a chained role: names the CR itself holds, nothing more.
pub(crate) fn describe_source(auth: &AwsAuth, operator: &str) -> String {
    let base = match (&auth.credentials_secret_ref, &auth.roles_anywhere) {
        (_, Some(ra)) => format!(
            "rolesAnywhere {}/{}",
            ra.certificate_secret_ref.namespace, ra.certificate_secret_ref.name
        ),
        (Some(r), None) => format!("credentialsSecretRef {}/{}", r.namespace, r.name),
        (None, None) => operator.to_string(),
    };
    match &auth.role_arn {
        Some(role) => format!("{base} > roleArn {role}"),
        None => base,
    }
}

/// How long a failed fetch is remembered, so CRs sharing a failing group make one call
/// between them rather than one each.
pub(crate) const FAILURE_MEMORY: Duration = Duration::from_secs(5);

/// The shared token cache with single-flight per group.
pub(crate) struct TokenCache<F> {
    fetcher: F,
    groups: Mutex<HashMap<TokenGroup, Arc<tokio::sync::Mutex<Entry>>>>,
    calls: std::sync::atomic::AtomicU64,
    /// Where fetches are counted, by result.
    metrics: Metrics,
}

#[derive(Default)]
struct Entry {
    token: Option<Arc<RegistryToken>>,
    failure: Option<(OffsetDateTime, TokenError)>,
    /// [`FetchToken::credentials_fingerprint`] when `token` or `failure` was had.
    fingerprint: Option<u64>,
}

// === impl TokenCache ===

impl<F: FetchToken> TokenCache<F> {
    pub(crate) fn new(fetcher: F) -> Self {
        TokenCache {
            fetcher,
            groups: Mutex::new(HashMap::new()),
            calls: Default::default(),
            metrics: Metrics::default(),
        }
    }

    /// Counts fetches in the operator's registry (a private one until given).
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// A token for `group` that is not yet due for refresh by `margin` (default half its
    /// lifetime). A token fetched less than `min_interval` ago is reused whatever its
    /// expiry says: that is the storm floor.
    pub(crate) async fn token(
        &self,
        group: &TokenGroup,
        margin: Option<Duration>,
        min_interval: Duration,
        now: OffsetDateTime,
    ) -> Result<Arc<RegistryToken>, TokenError> {
        let group = cache_key(group);
        let slot = {
            let mut groups = match self.groups.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            groups.entry(group.clone()).or_default().clone()
        };
        // Callers for one group queue here: the first fetches, the rest reuse.
        let mut entry = slot.lock().await;
        self.fetcher.credentials_ready(&group).await;
        // Read before the fetch: a rotation during the fetch shows as a change next time.
        let fingerprint = self.fetcher.credentials_fingerprint(&group);
        if entry.fingerprint == fingerprint {
            if let Some(token) = &entry.token {
                if now < refresh_at(token, margin, min_interval) {
                    return Ok(token.clone());
                }
            }
            if let Some((at, err)) = &entry.failure {
                if now < saturating_add(*at, FAILURE_MEMORY) {
                    return Err(err.clone());
                }
            }
        }
        entry.fingerprint = fingerprint;
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetcher.fetch(&group).await {
            Ok(token) => {
                self.metrics.token_fetch("success");
                let token = Arc::new(token);
                entry.token = Some(token.clone());
                entry.failure = None;
                Ok(token)
            }
            Err(err) => {
                self.metrics.token_fetch(err.reason.as_str());
                entry.failure = Some((now, err.clone()));
                Err(err)
            }
        }
    }

    /// The token cached for `group`, without fetching: `None` when there is none, or
    /// while a fetch for it is in flight.
    pub(crate) fn cached(&self, group: &TokenGroup) -> Option<Arc<RegistryToken>> {
        let slot = {
            let groups = match self.groups.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            groups.get(&cache_key(group))?.clone()
        };
        let entry = slot.try_lock().ok()?;
        entry.token.clone()
    }

    /// GetAuthorizationToken calls made so far (for tests and the benchmark).
    #[cfg(test)]
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keeps only the groups in `in_use` (those some CR needs), and the fetcher's state
    /// for their identities: groups are keyed by CR-controlled fields (region, role,
    /// external id, credentials Secret), so a cache that only grows is a memory leak any
    /// CR author can drive.
    ///
    /// A group a [`TokenCache::token`] call holds right now stays until a later prune: the
    /// prune may have read the CRs just before an edit reached the cache, and dropping the
    /// group of the edit's reconcile mid-fetch lost its token (and cost another ECR call).
    pub(crate) fn retain(&self, in_use: &HashSet<TokenGroup>) {
        let keys: HashSet<TokenGroup> = in_use.iter().map(cache_key).collect();
        let mut groups = match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        groups.retain(|g, slot| keys.contains(g) || Arc::strong_count(slot) > 1);
        let auths: HashSet<&AwsAuth> = in_use
            .iter()
            .map(|g| &g.auth)
            .chain(groups.keys().map(|g| &g.auth))
            .collect();
        self.fetcher.retain_identities(&|a| auths.contains(a));
    }

    /// How many groups are cached.
    pub(crate) fn len(&self) -> usize {
        match self.groups.lock() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    /// Whether no group is cached.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fetcher (for its own counters and sizes).
    pub(crate) fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// Forgets every cached token (credentials changed).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        match self.groups.lock() {
            Ok(mut groups) => groups.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }
}

/// ECR Public lives in us-east-1 only and its token does not depend on the caller's
/// region: public groups that differ only by region share one entry (and one call).
fn cache_key(group: &TokenGroup) -> TokenGroup {
    let mut key = group.clone();
    if key.public {
        key.region.clear();
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::vocab::LATEST;
    use std::sync::atomic::{AtomicU64, Ordering};

    const T0: OffsetDateTime = time::macros::datetime!(2026-11-26 12:00 UTC);

    struct Fake {
        calls: AtomicU64,
        lifetime: time::Duration,
        fail: std::sync::atomic::AtomicBool,
        now: Mutex<OffsetDateTime>,
        fingerprint: Mutex<Option<u64>>,
        regions_asked: Mutex<Vec<String>>,
    }

    impl FetchToken for Arc<Fake> {
        async fn fetch(&self, group: &TokenGroup) -> Result<RegistryToken, TokenError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.regions_asked
                .lock()
                .unwrap()
                .push(group.region.clone());
            tokio::task::yield_now().await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(TokenError {
                    reason: Reason::AwsError,
                    message: "boom".into(),
                });
            }
            let now = *self.now.lock().unwrap();
            Ok(RegistryToken {
                username: "AWS".into(),
                password: "pw".into(),
                auth: "QVdTOnB3".into(),
                expires_at: now + self.lifetime,
                fetched_at: now,
                registry_host: None,
            })
        }

        fn credentials_fingerprint(&self, _group: &TokenGroup) -> Option<u64> {
            *self.fingerprint.lock().unwrap()
        }
    }

    fn fake(lifetime: time::Duration) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicU64::new(0),
            lifetime,
            fail: Default::default(),
            now: Mutex::new(T0),
            fingerprint: Mutex::new(None),
            regions_asked: Mutex::new(Vec::new()),
        })
    }

    fn group() -> TokenGroup {
        TokenGroup {
            region: "us-east-1".into(),
            public: false,
            auth: AwsAuth::default(),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_call() {
        let f = fake(time::Duration::hours(12));
        let cache = Arc::new(TokenCache::new(f.clone()));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .token(&group(), None, Duration::from_secs(60), T0)
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.calls(), 1);
    }

    #[tokio::test]
    async fn token_is_refreshed_at_half_life_not_before() {
        let f = fake(time::Duration::hours(12));
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        cache.token(&group(), None, floor, T0).await.unwrap();
        cache
            .token(&group(), None, floor, T0 + time::Duration::hours(5))
            .await
            .unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        *f.now.lock().unwrap() = T0 + time::Duration::hours(6);
        let t = cache
            .token(&group(), None, floor, T0 + time::Duration::hours(6))
            .await
            .unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        assert_eq!(t.fetched_at, T0 + time::Duration::hours(6));
    }

    #[tokio::test]
    async fn expiry_in_the_past_is_held_to_the_floor() {
        // moto answers with an expiresAt in 2015: trusting it blindly would loop.
        let f = fake(time::Duration::hours(-100_000));
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        for s in 0..60 {
            cache
                .token(&group(), None, floor, T0 + time::Duration::seconds(s))
                .await
                .unwrap();
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        cache
            .token(&group(), None, floor, T0 + time::Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_remembered_briefly_then_retried() {
        let f = fake(time::Duration::hours(12));
        f.fail.store(true, Ordering::SeqCst);
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        assert!(cache.token(&group(), None, floor, T0).await.is_err());
        assert!(cache
            .token(&group(), None, floor, T0 + time::Duration::seconds(1))
            .await
            .is_err());
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        f.fail.store(false, Ordering::SeqCst);
        assert!(cache
            .token(&group(), None, floor, T0 + time::Duration::seconds(5))
            .await
            .is_ok());
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rotated_credentials_fetch_a_new_token_at_once() {
        let f = fake(time::Duration::hours(12));
        *f.fingerprint.lock().unwrap() = Some(1);
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        cache.token(&group(), None, floor, T0).await.unwrap();
        cache.token(&group(), None, floor, T0).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);

        // Inside both the half-life and the floor: only the rotation explains a call.
        *f.fingerprint.lock().unwrap() = Some(2);
        cache.token(&group(), None, floor, T0).await.unwrap();
        cache.token(&group(), None, floor, T0).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);

        // A failure with the old key is not remembered against the new one.
        f.fail.store(true, Ordering::SeqCst);
        *f.fingerprint.lock().unwrap() = Some(3);
        assert!(cache.token(&group(), None, floor, T0).await.is_err());
        f.fail.store(false, Ordering::SeqCst);
        *f.fingerprint.lock().unwrap() = Some(4);
        assert!(cache.token(&group(), None, floor, T0).await.is_ok());
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn public_groups_share_one_token_whatever_the_region() {
        let f = fake(time::Duration::hours(12));
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        for region in ["us-east-1", "eu-west-1", ""] {
            let public = TokenGroup {
                region: region.into(),
                public: true,
                auth: AwsAuth::default(),
            };
            cache.token(&public, None, floor, T0).await.unwrap();
        }
        let private = |region: &str| TokenGroup {
            region: region.into(),
            ..group()
        };
        cache
            .token(&private("eu-west-1"), None, floor, T0)
            .await
            .unwrap();
        cache
            .token(&private("us-east-1"), None, floor, T0)
            .await
            .unwrap();
        assert_eq!(
            *f.regions_asked.lock().unwrap(),
            ["", "eu-west-1", "us-east-1"],
            "one public call, one per private region"
        );
    }

    #[tokio::test]
    async fn groups_no_cr_uses_are_dropped() {
        let f = fake(time::Duration::hours(12));
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        let in_region = |region: &str| TokenGroup {
            region: region.into(),
            ..group()
        };
        for region in ["us-east-1", "eu-west-1", "ap-south-1"] {
            cache
                .token(&in_region(region), None, floor, T0)
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 3);
        cache.retain(&HashSet::from([in_region("eu-west-1")]));
        assert_eq!(cache.len(), 1);
        assert!(cache.cached(&in_region("eu-west-1")).is_some());
        cache.retain(&HashSet::new());
        assert!(cache.is_empty());
    }

    /// A prune that read the CRs just before an edit must not drop the group the edit's
    /// reconcile is fetching: its token would be lost, and fetched again.
    #[tokio::test]
    async fn a_prune_during_a_fetch_keeps_the_group_being_fetched() {
        let f = fake(time::Duration::hours(12));
        let cache = Arc::new(TokenCache::new(f.clone()));
        let floor = Duration::from_secs(60);
        let fetching = tokio::spawn({
            let cache = cache.clone();
            async move { cache.token(&group(), None, floor, T0).await }
        });
        // The fake fetch yields once: the spawned call is now inside it.
        tokio::task::yield_now().await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 1, "the fetch has started");
        assert!(!fetching.is_finished(), "the fetch is still in flight");
        cache.retain(&HashSet::new());
        fetching.await.unwrap().unwrap();
        assert_eq!(cache.len(), 1, "the group being fetched was kept");
        cache.token(&group(), None, floor, T0).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 1, "its token was kept too");
        // Once no call holds it, the next prune drops it.
        cache.retain(&HashSet::new());
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn clear_forgets_every_token() {
        let f = fake(time::Duration::hours(12));
        let cache = TokenCache::new(f.clone());
        let floor = Duration::from_secs(60);
        cache.token(&group(), None, floor, T0).await.unwrap();
        cache.clear();
        cache.token(&group(), None, floor, T0).await.unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn refresh_point_honours_margin_and_floor() {
        let t = RegistryToken {
            username: "AWS".into(),
            password: "x".into(),
            auth: String::new(),
            fetched_at: T0,
            expires_at: T0 + time::Duration::hours(12),
            registry_host: None,
        };
        let floor = Duration::from_secs(60);
        assert_eq!(refresh_at(&t, None, floor), T0 + time::Duration::hours(6));
        assert_eq!(
            refresh_at(&t, Some(Duration::from_secs(3600)), floor),
            T0 + time::Duration::hours(11)
        );
        assert_eq!(
            refresh_at(&t, Some(Duration::from_secs(24 * 3600)), floor),
            T0 + time::Duration::seconds(60)
        );
        assert!(!format!("{t:?}").contains("\"x\""));
    }

    #[test]
    fn absurd_durations_saturate_instead_of_panicking() {
        let t = RegistryToken {
            username: "AWS".into(),
            password: "x".into(),
            auth: String::new(),
            fetched_at: T0,
            expires_at: T0 + time::Duration::hours(12),
            registry_host: None,
        };
        let huge = Duration::from_secs(100_000_000 * 3600);
        assert_eq!(refresh_at(&t, None, huge), LATEST);
        assert_eq!(refresh_at(&t, Some(huge), Duration::ZERO), T0);
        assert_eq!(refresh_at(&t, Some(Duration::MAX), Duration::MAX), LATEST);
        let far = RegistryToken {
            expires_at: LATEST,
            fetched_at: time::macros::datetime!(-9999-01-01 0:00 UTC),
            ..t
        };
        let _ = refresh_at(&far, None, Duration::MAX);
        assert_eq!(saturating_add(LATEST, Duration::from_secs(1)), LATEST);
    }
}
