//! Watch-delivery lag, as a busy kube-apiserver has it: its watch cache trails etcd, by
//! hundreds of milliseconds under load and sometimes by seconds, while writes (and their
//! answers) are already committed. A fault like the others, switchable at runtime.
//!
//! Each event is delivered no earlier than its commit plus a fixed delay plus a seeded
//! random one, never before an earlier event (watches deliver in order), and not during
//! a stall: a window in which every watch goes quiet, bookmarks included.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How watch events trail their writes. The default delivers at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchLag {
    /// Added to every event.
    pub fixed_ms: u64,
    /// Up to this much more, drawn per event (seeded).
    pub random_ms: u64,
    /// Seed of the random part: one seed, one sequence of delays.
    pub seed: u64,
    /// Every this often, all watches stall for `stall_ms`.
    pub stall_every_ms: Option<u64>,
    /// Length of each periodic stall, capped at `stall_every_ms`.
    pub stall_ms: u64,
}

/// The live lag setting shared by every watch of one emulator.
pub(crate) struct LagControl {
    state: Mutex<LagState>,
}

struct LagState {
    config: WatchLag,
    rng: u64,
    /// Set by `set`: the origin of periodic stalls.
    since: Instant,
    /// A one-off stall requested by a test.
    stall_until: Option<Instant>,
}

// === impl LagControl ===

impl Default for LagControl {
    fn default() -> Self {
        LagControl {
            state: Mutex::new(LagState {
                config: WatchLag::default(),
                rng: 1,
                since: Instant::now(),
                stall_until: None,
            }),
        }
    }
}

impl LagControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, LagState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the setting; the random sequence restarts from its seed.
    pub(crate) fn set(&self, config: WatchLag) {
        let mut st = self.lock();
        st.rng = config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        st.since = Instant::now();
        st.config = config;
    }

    pub(crate) fn config(&self) -> WatchLag {
        self.lock().config.clone()
    }

    /// Every watch goes quiet for `d` from now.
    pub(crate) fn stall(&self, d: Duration) {
        self.lock().stall_until = Some(Instant::now() + d);
    }

    /// Whether any lag is configured (the fast path skips all of this).
    pub(crate) fn is_active(&self) -> bool {
        let st = self.lock();
        st.config != WatchLag::default() || st.stall_until.is_some_and(|t| t > Instant::now())
    }

    /// When an event committed at `committed` may be delivered.
    pub(crate) fn due(&self, committed: Instant) -> Instant {
        let mut st = self.lock();
        let mut extra = st.config.fixed_ms;
        if st.config.random_ms > 0 {
            // xorshift64*: reproducible for a seed.
            st.rng ^= st.rng >> 12;
            st.rng ^= st.rng << 25;
            st.rng ^= st.rng >> 27;
            let r = st.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
            extra += r % (st.config.random_ms + 1);
        }
        committed + Duration::from_millis(extra)
    }

    /// If `t` falls in a stall, when that stall ends.
    pub(crate) fn stalled_until(&self, t: Instant) -> Option<Instant> {
        let st = self.lock();
        if let Some(until) = st.stall_until.filter(|u| t < *u) {
            return Some(until);
        }
        let every = st.config.stall_every_ms.filter(|e| *e > 0)?;
        let len = st.config.stall_ms.min(every);
        let into = t.saturating_duration_since(st.since).as_millis() as u64 % every;
        // The last `len` of each period is quiet.
        (into >= every - len).then(|| t + Duration::from_millis(every - into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_are_fixed_plus_a_seeded_random_part() {
        let lag = LagControl::default();
        let cfg = WatchLag {
            fixed_ms: 200,
            random_ms: 100,
            seed: 3,
            ..WatchLag::default()
        };
        lag.set(cfg.clone());
        let t0 = Instant::now();
        let a: Vec<Duration> = (0..50).map(|_| lag.due(t0) - t0).collect();
        assert!(a
            .iter()
            .all(|d| (200..=300).contains(&(d.as_millis() as u64))));
        lag.set(cfg);
        let b: Vec<Duration> = (0..50).map(|_| lag.due(t0) - t0).collect();
        assert_eq!(a, b, "reproducible");
    }

    #[tokio::test(start_paused = true)]
    async fn stalls_come_periodically_and_on_demand() {
        let lag = LagControl::default();
        lag.set(WatchLag {
            stall_every_ms: Some(1000),
            stall_ms: 300,
            ..WatchLag::default()
        });
        let t0 = Instant::now();
        assert_eq!(lag.stalled_until(t0 + Duration::from_millis(500)), None);
        assert_eq!(
            lag.stalled_until(t0 + Duration::from_millis(800)),
            Some(t0 + Duration::from_millis(1000))
        );
        lag.set(WatchLag::default());
        assert!(!lag.is_active());
        lag.stall(Duration::from_secs(2));
        assert!(lag.is_active());
        assert!(lag.stalled_until(Instant::now()).is_some());
    }
}
