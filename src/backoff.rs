//! The one retry policy and the one jitter source of the operator.
//!
//! Every wait before a retry is computed here: watch errors, per-key reconcile failures
//! (the work queue), leader-election retries, AWS call retries, the Kubernetes client's
//! Retry-After waits, and the spread of periodic requeues. One place, so that three
//! guarantees hold for all of them; getting any of them wrong silently turns a retry
//! loop into a hot loop or a panic:
//!
//! - Parameters are validated: a zero initial delay or a factor below 1 is refused
//!   ([`BackoffError`]), not discovered in production.
//! - The math saturates: attempt 10 000 waits the cap, it does not overflow.
//! - Jitter is bounded: it only ever shortens a delay, by at most the configured
//!   fraction, so no delay exceeds its cap.
//!
//! Jitter comes from `SplitMix64`, a tiny generator (no `rand` crate). Seeded from the
//! clock and a process-wide counter, no two backoffs in one process share a sequence, so
//! watchers that failed together do not retry together. Seeded from a key
//! (`SplitMix64::fixed_for`), the same key always draws the same fractions, for a
//! spread that must not wander (a CR's periodic requeue).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Watch errors: first retry after 0.8 s (client-go's and kube-runtime's choice: long
/// enough not to hammer an API server that is restarting, short enough that a blip is
/// invisible).
pub(crate) const WATCH_INITIAL: Duration = Duration::from_millis(800);
/// Watch errors: never wait more than 30 s, so a recovered API server is noticed fast.
pub(crate) const WATCH_MAX: Duration = Duration::from_secs(30);
/// Watch errors: after 2 minutes without an error the next failure starts from 0.8 s
/// again, instead of inheriting a 30 s delay from an outage long past.
pub(crate) const WATCH_RESET_AFTER: Duration = Duration::from_secs(120);
/// Watch errors: up to a quarter of the delay is shaved off at random, which spreads
/// retries of watchers that failed at the same instant.
pub(crate) const WATCH_JITTER: f64 = 0.25;

/// Reconcile failures: first retry of a failed key after 2 s, long enough for a
/// conflicting write or an API blip to pass, short enough not to make the operator
/// feel slow.
pub(crate) const FAILURE_BASE: Duration = Duration::from_secs(2);
/// Reconcile failures: never more than 5 minutes between retries of one key, which
/// keeps a persistently failing key (a missing IAM permission, say) from burning API
/// quota while a fix is still picked up well within a token's 12-hour lifetime.
pub(crate) const FAILURE_MAX: Duration = Duration::from_secs(300);

/// Server-directed retries (429, 503): wait this long when the answer names no
/// Retry-After.
pub(crate) const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);
/// Server-directed retries: a Retry-After longer than this is capped, because failing
/// and backing off outside (with the caller's own policy) beats hanging on one request.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// The smallest initial delay [`Backoff::doubling`] accepts: doubling zero stays zero.
const MIN_INITIAL: Duration = Duration::from_millis(1);

/// Why a set of backoff parameters was refused.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum BackoffError {
    /// A zero initial delay would make the first retry immediate and, with any factor,
    /// every later one too.
    ZeroInitial,
    /// The cap is below the initial delay, so the "exponential" part could never apply.
    MaxBelowInitial {
        /// The initial delay asked for.
        initial: Duration,
        /// The cap asked for, below `initial`.
        max: Duration,
    },
    /// The factor must be a finite number of at least 1.0, or delays would shrink.
    InvalidFactor(f64),
    /// The jitter is a fraction of the delay and must lie within 0.0..=1.0.
    InvalidJitter(f64),
}

// === impl BackoffError ===

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroInitial => write!(f, "backoff: the initial delay must be greater than zero"),
            Self::MaxBelowInitial { initial, max } => write!(
                f,
                "backoff: the maximum delay ({max:?}) must be at least the initial delay ({initial:?})"
            ),
            Self::InvalidFactor(x) => {
                write!(f, "backoff: the factor must be a finite number >= 1.0, got {x}")
            }
            Self::InvalidJitter(x) => {
                write!(f, "backoff: the jitter must be a fraction within 0.0..=1.0, got {x}")
            }
        }
    }
}

impl std::error::Error for BackoffError {}

/// An exponential backoff: `initial`, `initial * factor`, ... up to `max`, each delay
/// then reduced by a random fraction of at most `jitter`.
///
/// Jitter only ever shortens a delay, so every delay lies in
/// `[base * (1 - jitter), base]` and never exceeds `max`.
///
/// Two ways to use it: as a sequence ([`next_delay`](Self::next_delay), then a reset
/// after a success) for one retry loop, or by attempt number ([`delay`](Self::delay),
/// [`base_delay`](Self::base_delay)) for callers that count attempts themselves (the work
/// queue, per key; AWS retries, per call).
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    /// The attempt number the next [`next_delay`](Self::next_delay) serves.
    attempt: u32,
    rng: SplitMix64,
}

// === impl Backoff ===

impl Backoff {
    /// Validates the parameters; see [`BackoffError`] for what is refused and why.
    pub(crate) fn new(
        initial: Duration,
        max: Duration,
        factor: f64,
        jitter: f64,
    ) -> Result<Backoff, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { initial, max });
        }
        if !factor.is_finite() || factor < 1.0 {
            return Err(BackoffError::InvalidFactor(factor));
        }
        if !(0.0..=1.0).contains(&jitter) {
            // NaN fails `contains` too.
            return Err(BackoffError::InvalidJitter(jitter));
        }
        Ok(Backoff {
            initial,
            max,
            factor,
            jitter,
            attempt: 0,
            rng: SplitMix64::from_entropy(),
        })
    }

    /// Doubling from `initial` to `max` without jitter, for callers whose settings are
    /// not worth refusing: a zero `initial` is raised to 1 ms (doubling zero stays zero)
    /// and a `max` below it is raised to `initial`.
    #[must_use]
    pub(crate) fn doubling(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(MIN_INITIAL);
        Backoff {
            initial,
            max: max.max(initial),
            factor: 2.0,
            jitter: 0.0,
            attempt: 0,
            // Never drawn from: without jitter there is nothing to randomise.
            rng: SplitMix64::with_seed(0),
        }
    }

    /// The watch-error policy: 0.8 s doubling to 30 s with jitter.
    #[must_use]
    pub(crate) fn for_watch_errors() -> Backoff {
        Backoff {
            initial: WATCH_INITIAL,
            max: WATCH_MAX,
            factor: 2.0,
            jitter: WATCH_JITTER,
            attempt: 0,
            rng: SplitMix64::from_entropy(),
        }
    }

    /// The reconcile-failure policy: [`FAILURE_BASE`] doubling to [`FAILURE_MAX`],
    /// without jitter (the failures of different keys are already spread by when their
    /// reconciles ran).
    #[must_use]
    pub(crate) fn for_reconcile_failures() -> Backoff {
        Backoff::doubling(FAILURE_BASE, FAILURE_MAX)
    }

    /// The pre-jitter delay of attempt `attempt` (0 for the first retry):
    /// `initial * factor^attempt`, saturating at `max`, and never below `initial`.
    pub(crate) fn base_delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return self.initial;
        }
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.powi(exponent);
        // Too large (or infinite) for a Duration means past any cap.
        Duration::try_from_secs_f64(secs).map_or(self.max, |d| d.clamp(self.initial, self.max))
    }

    /// The jittered delay of attempt `attempt`; does not move the sequence.
    pub(crate) fn delay(&mut self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        self.rng.shave(base, self.jitter)
    }

    /// The delay to wait before the next attempt; advances the sequence.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts the sequence over from the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `d * factor`, or `Duration::MAX` when the product does not fit.
fn scale_saturating(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// First retry of a transient API error within one reconcile (a 500, a reset
/// connection): a busy server's blip passes in a fraction of a second.
pub(crate) const TRANSIENT_INITIAL: Duration = Duration::from_millis(100);
/// Longest wait between two such retries.
pub(crate) const TRANSIENT_MAX: Duration = Duration::from_secs(1);
/// Retries of one request before its error counts: then the reconcile fails and the
/// work queue's longer backoff takes over.
pub(crate) const TRANSIENT_RETRIES: u32 = 3;

impl Backoff {
    /// The transient-error policy: [`TRANSIENT_INITIAL`] doubling to [`TRANSIENT_MAX`],
    /// half jittered so that writes failing together do not retry together.
    #[must_use]
    pub(crate) fn for_transient_errors() -> Backoff {
        Backoff {
            initial: TRANSIENT_INITIAL,
            max: TRANSIENT_MAX,
            factor: 2.0,
            jitter: 0.5,
            attempt: 0,
            rng: SplitMix64::from_entropy(),
        }
    }
}

/// The operator's one retry loop: runs `op` until it succeeds, fails with an error
/// `retryable` refuses, or `retries` retries are spent, sleeping `delay(n)` before retry
/// `n` (0-based). The Kubernetes writes' transient errors and the AWS calls retry
/// through it; the Kubernetes client's Retry-After handling waits as the server says
/// instead ([`retry_after_delay`]).
pub(crate) async fn retry<T, E: fmt::Display, Fut>(
    retries: u32,
    mut delay: impl FnMut(u32) -> Duration,
    retryable: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut spent = 0;
    loop {
        match op().await {
            Err(e) if spent < retries && retryable(&e) => {
                let wait = delay(spent);
                tracing::debug!(error = %e, ?wait, retry = spent + 1, "retrying");
                tokio::time::sleep(wait).await;
                spent += 1;
            }
            other => return other,
        }
    }
}

/// How long to wait before retrying a request the server refused with 429 or 503:
/// its Retry-After, or [`RETRY_AFTER_DEFAULT`] without one, capped at
/// [`RETRY_AFTER_MAX`].
pub(crate) fn retry_after_delay(server: Option<Duration>) -> Duration {
    server.unwrap_or(RETRY_AFTER_DEFAULT).min(RETRY_AFTER_MAX)
}

/// A [`Backoff`] that starts over once the guarded operation has been healthy for a
/// while, so one failure after hours of health waits 0.8 s, not the last cap.
///
/// Time is passed in (tokio's clock in production, paused time in tests).
#[derive(Clone, Debug)]
pub(crate) struct ResetAfterHealthy {
    backoff: Backoff,
    reset_after: Duration,
    /// Since when the operation has succeeded without a failure in between.
    healthy_since: Option<Instant>,
}

// === impl ResetAfterHealthy ===

impl ResetAfterHealthy {
    #[must_use]
    pub(crate) fn new(backoff: Backoff, reset_after: Duration) -> ResetAfterHealthy {
        ResetAfterHealthy {
            backoff,
            reset_after,
            healthy_since: None,
        }
    }

    /// The watcher's policy: 0.8 s doubling to 30 s with jitter, reset after 2 minutes
    /// of health.
    #[must_use]
    pub(crate) fn for_watch_errors() -> ResetAfterHealthy {
        ResetAfterHealthy::new(Backoff::for_watch_errors(), WATCH_RESET_AFTER)
    }

    /// Records a success at `now`; the healthy period starts at the first success
    /// after a failure.
    pub(crate) fn record_success(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// Records a failure at `now` and returns how long to wait before retrying.
    pub(crate) fn record_failure(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.healthy_since.take() {
            if now.saturating_duration_since(since) >= self.reset_after {
                self.backoff.reset();
            }
        }
        self.backoff.next_delay()
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny generator with a full 2^64 period, good
/// enough to decorrelate retry times; not for anything secret. The one jitter source:
/// every random spread of a delay in the operator is drawn here.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Distinguishes generators created within one clock tick.
static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

// === impl SplitMix64 ===

impl SplitMix64 {
    /// A generator no other in this process shares: seeded from the wall clock and a
    /// process-wide counter.
    pub(crate) fn from_entropy() -> SplitMix64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let count = SEED_COUNTER.fetch_add(1, Ordering::Relaxed);
        SplitMix64 {
            state: nanos ^ count.wrapping_mul(GOLDEN_GAMMA).rotate_left(17),
        }
    }

    /// A generator determined by `key` alone, in every process and every release: its
    /// seed is the FNV-1a hash of the key's bytes, which (unlike std's hashers) is fixed
    /// by its definition. For spreads that must not wander, e.g. a CR's requeue.
    pub(crate) fn fixed_for(key: &str) -> SplitMix64 {
        const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;
        let seed = key.bytes().fold(FNV_OFFSET, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
        });
        SplitMix64::with_seed(seed)
    }

    pub(crate) fn with_seed(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform fraction in `[0, 1)`, from the top 53 bits.
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `d` shortened by a random fraction of at most `fraction` (clamped to `0..=1`):
    /// within `[d * (1 - fraction), d]`, never above `d`. A zero fraction draws nothing.
    pub(crate) fn shave(&mut self, d: Duration, fraction: f64) -> Duration {
        let fraction = fraction.clamp(0.0, 1.0);
        if fraction == 0.0 {
            return d;
        }
        let keep = 1.0 - fraction * self.next_unit();
        // `keep` lies in (0, 1], so the product cannot exceed `d`; `min` guards the
        // rounding of a `d` too large for an f64 to hold exactly.
        scale_saturating(d, keep).min(d)
    }

    /// `d` stretched by a random fraction of at most `factor` times itself: within
    /// `[d, d * (1 + factor)]`, saturating at `Duration::MAX`.
    pub(crate) fn stretch(&mut self, d: Duration, factor: f64) -> Duration {
        let extra = factor.max(0.0) * self.next_unit();
        d.saturating_add(scale_saturating(d, extra))
    }
}

#[cfg(test)]
mod tests;
