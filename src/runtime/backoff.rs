//! Exponential backoff with validated parameters, saturating math and bounded jitter.
//!
//! Why a type of its own: every retry loop in the operator (watch errors, per-key
//! reconcile failures) needs the same three guarantees, and getting any of them wrong
//! silently (a multiplication that overflows into a panic, a jitter that exceeds the
//! cap, a factor below 1 that makes delays shrink) turns a retry loop into a hot loop.
//!
//! Jitter comes from a tiny splitmix64 generator seeded from the wall clock and a
//! process-wide counter: no `rand` crate, and no two backoffs in one process share a
//! sequence (so a fleet of watchers that failed together does not retry together).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Watch errors: first retry after 0.8 s (client-go's and kube-runtime's choice: long
/// enough not to hammer an API server that is restarting, short enough that a blip is
/// invisible).
pub const WATCH_INITIAL: Duration = Duration::from_millis(800);
/// Watch errors: never wait more than 30 s, so a recovered API server is noticed fast.
pub const WATCH_MAX: Duration = Duration::from_secs(30);
/// Watch errors: after 2 minutes without an error the next failure starts from 0.8 s
/// again, instead of inheriting a 30 s delay from an outage long past.
pub const WATCH_RESET_AFTER: Duration = Duration::from_secs(120);
/// Watch errors: up to a quarter of the delay is shaved off at random, which spreads
/// retries of watchers that failed at the same instant.
pub const WATCH_JITTER: f64 = 0.25;

/// Why a set of backoff parameters was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum BackoffError {
    /// A zero initial delay would make the first retry immediate and, with any factor,
    /// every later one too.
    ZeroInitial,
    /// The cap is below the initial delay, so the "exponential" part could never apply.
    MaxBelowInitial { initial: Duration, max: Duration },
    /// The factor must be a finite number of at least 1.0, or delays would shrink.
    InvalidFactor(f64),
    /// The jitter is a fraction of the delay and must lie within 0.0..=1.0.
    InvalidJitter(f64),
}

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
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    /// The pre-jitter delay the next call hands out.
    next_base: Duration,
    rng: SplitMix64,
}

// === impl Backoff ===

impl Backoff {
    /// Validates the parameters; see [`BackoffError`] for what is refused and why.
    pub fn new(
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
            next_base: initial,
            rng: SplitMix64::from_entropy(),
        })
    }

    /// The watch-error policy: 0.8 s doubling to 30 s with jitter.
    #[must_use]
    pub fn for_watch_errors() -> Backoff {
        Backoff {
            initial: WATCH_INITIAL,
            max: WATCH_MAX,
            factor: 2.0,
            jitter: WATCH_JITTER,
            next_base: WATCH_INITIAL,
            rng: SplitMix64::from_entropy(),
        }
    }

    /// The delay to wait before the next attempt; advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next_base_delay();
        if self.jitter == 0.0 {
            return base;
        }
        let shave = self.jitter * self.rng.next_unit();
        // `shave` lies in [0, jitter] within [0, 1], so the product stays in [0, base].
        base.mul_f64(1.0 - shave)
    }

    /// Starts the sequence over from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next_base = self.initial;
    }

    /// The pre-jitter delay, advancing the sequence with saturating math.
    fn next_base_delay(&mut self) -> Duration {
        let base = self.next_base;
        self.next_base = scale_saturating(base, self.factor).min(self.max);
        base
    }
}

/// `d * factor`, or `Duration::MAX` when the product does not fit.
fn scale_saturating(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// A [`Backoff`] that starts over once the guarded operation has been healthy for a
/// while, so one failure after hours of health waits 0.8 s, not the last cap.
///
/// Time is passed in (tokio's clock in production, paused time in tests).
#[derive(Clone, Debug)]
pub struct ResetAfterHealthy {
    backoff: Backoff,
    reset_after: Duration,
    /// Since when the operation has succeeded without a failure in between.
    healthy_since: Option<Instant>,
}

// === impl ResetAfterHealthy ===

impl ResetAfterHealthy {
    #[must_use]
    pub fn new(backoff: Backoff, reset_after: Duration) -> ResetAfterHealthy {
        ResetAfterHealthy {
            backoff,
            reset_after,
            healthy_since: None,
        }
    }

    /// The watcher's policy: 0.8 s doubling to 30 s with jitter, reset after 2 minutes
    /// of health.
    #[must_use]
    pub fn for_watch_errors() -> ResetAfterHealthy {
        ResetAfterHealthy::new(Backoff::for_watch_errors(), WATCH_RESET_AFTER)
    }

    /// Records a success at `now`; the healthy period starts at the first success
    /// after a failure.
    pub fn record_success(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// Records a failure at `now` and returns how long to wait before retrying.
    pub fn record_failure(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.healthy_since.take() {
            if now.saturating_duration_since(since) >= self.reset_after {
                self.backoff.reset();
            }
        }
        self.backoff.next_delay()
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny generator with a full 2^64 period,
/// good enough to decorrelate retry times; not for anything secret.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Distinguishes generators created within one clock tick.
static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

// === impl SplitMix64 ===

impl SplitMix64 {
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

    #[cfg(test)]
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
}

#[cfg(test)]
mod tests;
