//! Registry verification: each token is shown once to each registry it serves
//! (`GET /v2/`), however many namespaces and CRs share it, and the answer is kept for
//! the token's life. A failed check is asked again with backoff (30 s doubling to 30 min),
//! never per reconcile, so a down registry is not hammered by a busy cluster.
//!
//! The check itself is the `aws::registry` client, adapted in `app`; here it is only a
//! function, so the cache and the status are tested without a network.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::decide::token::RegistryToken;
pub(crate) use super::decide::verdict::{HostCheck, Verdict};
use super::vocab::saturating_add;
use crate::metrics::Metrics;

/// What a check answers: the verdict and a message.
pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = (Verdict, String)> + Send>>;
/// Checks `host` with a token.
pub(crate) type CheckFn = Arc<dyn Fn(String, Arc<RegistryToken>) -> CheckFuture + Send + Sync>;

/// The first retry of a failed check, doubled per failure up to [`RETRY_MAX`].
pub(crate) const RETRY_BASE: Duration = Duration::from_secs(30);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// The verification cache, shared by every reconcile. A check runs beside the
/// reconciles, never inside one: a registry that accepts and never answers holds no
/// worker (up to 3 GETs of 10 s each per check). A reconcile that finds no verdict yet
/// starts the check, goes on, and is requeued when the verdict lands.
pub(crate) struct Verifier {
    check: Option<CheckFn>,
    /// By (host, token fingerprint): the token's expiry (to prune) and its slot.
    slots: Mutex<HashMap<(String, u64), (OffsetDateTime, SharedSlot)>>,
    /// Told the CRs waiting on a verdict when it lands (the work queue, in the operator).
    on_verdict: Mutex<Option<VerdictHook>>,
    /// Where verdicts are counted.
    metrics: Metrics,
}

/// Requeues a CR whose verdict landed.
pub(crate) type VerdictHook = Arc<dyn Fn(&str) + Send + Sync>;

/// One (host, token)'s checks: at most one in flight, whatever the number of CRs.
type SharedSlot = Arc<Mutex<Slot>>;

#[derive(Default)]
struct Slot {
    last: Option<HostCheck>,
    failures: u32,
    in_flight: bool,
    /// CRs to requeue when the check in flight lands.
    waiting: BTreeSet<String>,
}

/// What a registry said of a token so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The verdict, current until its `retry_at`.
    Known(HostCheck),
    /// A check is running (started now or earlier); the asking CR is requeued when it
    /// lands.
    Pending,
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
    pub(crate) fn new(check: CheckFn) -> Self {
        Verifier {
            check: Some(check),
            slots: Mutex::new(HashMap::new()),
            on_verdict: Mutex::new(None),
            metrics: Metrics::default(),
        }
    }

    /// Counts verdicts in the operator's registry (a private one until given).
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// `--verify-registries=false`: nothing is checked.
    pub(crate) fn disabled() -> Self {
        Verifier {
            check: None,
            slots: Mutex::new(HashMap::new()),
            on_verdict: Mutex::new(None),
            metrics: Metrics::default(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.check.is_some()
    }

    /// Calls `hook` with each CR waiting on a verdict, when it lands.
    pub(crate) fn on_verdict(&self, hook: VerdictHook) {
        *lock(&self.on_verdict) = Some(hook);
    }

    /// `host`'s answer to `token` for CR `cr`, without waiting: the verdict when one is
    /// current; else a check is started (unless one is running) and `cr` is requeued
    /// when it lands. A token is asked once; after a failure, again when its backoff has
    /// passed. `None` when verification is off.
    pub(crate) fn lookup(
        &self,
        cr: &str,
        host: &str,
        token: &Arc<RegistryToken>,
        now: OffsetDateTime,
    ) -> Option<Lookup> {
        let check = self.check.as_ref()?;
        let slot = self.slot(host, token, now);
        let mut state = lock(&slot);
        if let Some(last) = &state.last {
            if last.retry_at.is_none_or(|at| now < at) {
                return Some(Lookup::Known(last.clone()));
            }
        }
        state.waiting.insert(cr.to_string());
        if state.in_flight {
            return Some(Lookup::Pending);
        }
        state.in_flight = true;
        drop(state);
        let running = check(host.to_string(), token.clone());
        let host = host.to_string();
        let hook = lock(&self.on_verdict).clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let (verdict, message) = running.await;
            metrics.registry_check(verdict.as_str());
            let waiting = land(&slot, host, verdict, message);
            if let Some(hook) = hook {
                for cr in &waiting {
                    hook(cr);
                }
            }
        });
        Some(Lookup::Pending)
    }

    /// The registries' word on `hosts` (each with its token) for CR `cr`. Every host is
    /// looked up (starting its check) before any answer is judged. `None` while a
    /// verdict is pending (`cr` is requeued when it lands), verification is off or there
    /// is nothing to check: the last result stands. With the checks, sorted by host, the
    /// earliest time a failed one is asked again.
    pub(crate) fn verdicts(
        &self,
        cr: &str,
        hosts: &[(String, &Arc<RegistryToken>)],
        now: OffsetDateTime,
    ) -> Option<(Vec<HostCheck>, Option<OffsetDateTime>)> {
        let lookups: Vec<Option<Lookup>> = hosts
            .iter()
            .map(|(host, token)| self.lookup(cr, host, token, now))
            .collect();
        let mut checks = Vec::new();
        for lookup in lookups {
            match lookup {
                Some(Lookup::Known(check)) => checks.push(check),
                Some(Lookup::Pending) | None => return None,
            }
        }
        if checks.is_empty() {
            return None;
        }
        checks.sort_by(|a, b| a.host.cmp(&b.host));
        let retry = checks.iter().filter_map(|c| c.retry_at).min();
        Some((checks, retry))
    }

    /// The slot of (host, token), dropping those of expired tokens on the way: the map
    /// holds at most hosts x live tokens.
    fn slot(&self, host: &str, token: &RegistryToken, now: OffsetDateTime) -> SharedSlot {
        let mut slots = lock(&self.slots);
        slots.retain(|_, (expires_at, _)| *expires_at > now);
        slots
            .entry((host.to_string(), fingerprint(token)))
            .or_insert_with(|| (token.expires_at, Arc::default()))
            .1
            .clone()
    }
}

/// Records a check's verdict in its slot; the CRs that waited for it.
fn land(slot: &Mutex<Slot>, host: String, verdict: Verdict, message: String) -> BTreeSet<String> {
    let checked_at = OffsetDateTime::now_utc();
    let mut state = lock(slot);
    let retry_at = if verdict == Verdict::Verified {
        state.failures = 0;
        None
    } else {
        state.failures = state.failures.saturating_add(1);
        Some(saturating_add(checked_at, backoff(state.failures)))
    };
    state.last = Some(HostCheck {
        host,
        verdict,
        message,
        checked_at,
        retry_at,
    });
    state.in_flight = false;
    std::mem::take(&mut state.waiting)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells tokens apart without keeping a copy of the credential as a key.
fn fingerprint(token: &RegistryToken) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.auth.hash(&mut hasher);
    token.fetched_at.hash(&mut hasher);
    hasher.finish()
}

/// The wait after the `failures`-th failure in a row: [`RETRY_BASE`] doubling to
/// [`RETRY_MAX`], by the operator's one backoff.
fn backoff(failures: u32) -> Duration {
    crate::backoff::Backoff::doubling(RETRY_BASE, RETRY_MAX).base_delay(failures.saturating_sub(1))
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

    /// Asks until the verdict is known (the check runs on its own task).
    async fn settled(
        v: &Verifier,
        host: &str,
        t: &Arc<RegistryToken>,
        now: OffsetDateTime,
    ) -> HostCheck {
        loop {
            if let Some(Lookup::Known(c)) = v.lookup("cr", host, t, now) {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_token_is_checked_once_per_host_however_often_asked() {
        let (verifier, calls) = counting(Verdict::Verified);
        let t = token("a");
        let now = OffsetDateTime::now_utc();
        for _ in 0..5 {
            let c = settled(&verifier, "h1", &t, now).await;
            assert_eq!(c.verdict, Verdict::Verified);
            assert_eq!(c.retry_at, None);
        }
        settled(&verifier, "h2", &t, now).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        settled(&verifier, "h1", &token("b"), now).await;
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
        let first = settled(&verifier, "h", &t, now).await;
        let retry = first.retry_at.unwrap();
        assert!(retry - first.checked_at >= time::Duration::seconds(30));
        settled(&verifier, "h", &t, now).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "inside the backoff: cached"
        );
        assert_eq!(verifier.lookup("cr", "h", &t, retry), Some(Lookup::Pending));
        let second = settled(&verifier, "h", &t, retry).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(second.retry_at.unwrap() - second.checked_at >= time::Duration::seconds(60));
        assert_eq!(backoff(30), RETRY_MAX);
    }

    #[tokio::test]
    async fn a_check_never_blocks_and_requeues_its_waiters_once() {
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let check: CheckFn = Arc::new(move |_host, _token| {
            let mut gate = gate_rx.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                (Verdict::Verified, String::new())
            })
        });
        let verifier = Verifier::new(check);
        let requeued = Arc::new(Mutex::new(Vec::new()));
        let seen = requeued.clone();
        verifier.on_verdict(Arc::new(move |cr: &str| {
            seen.lock().unwrap().push(cr.to_string())
        }));
        let t = token("a");
        let now = OffsetDateTime::now_utc();
        for cr in ["a", "b", "a"] {
            assert_eq!(verifier.lookup(cr, "h", &t, now), Some(Lookup::Pending));
        }
        gate_tx.send_replace(true);
        while requeued.lock().unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(*requeued.lock().unwrap(), ["a", "b"]);
        let known = verifier.lookup("c", "h", &t, now);
        assert!(matches!(known, Some(Lookup::Known(c)) if c.verdict == Verdict::Verified));
    }

    #[tokio::test]
    async fn disabled_checks_nothing_and_expired_tokens_are_forgotten() {
        assert!(Verifier::disabled()
            .lookup("cr", "h", &token("a"), OffsetDateTime::now_utc())
            .is_none());
        let (verifier, _) = counting(Verdict::Verified);
        let t = token("a");
        settled(&verifier, "h", &t, OffsetDateTime::now_utc()).await;
        let later = t.expires_at + time::Duration::seconds(1);
        verifier.lookup("cr", "h", &token("b"), later);
        assert_eq!(verifier.slots.lock().unwrap().len(), 1);
    }
}
