//! Bounded polling: the one loop behind every wait of the tests, the demo and the bench.
//!
//! A probe that answers `None` is asked again after a pause; at the deadline the loop
//! gives up with `None` and the caller says what it was waiting for (the tests panic, the
//! demo and the bench report). Nothing here waits without a bound.
//!
//! The clock is the real one (`std::time::Instant`): the processes and emulators being
//! watched run on real time, so a paused tokio clock must not stretch or shrink a wait.

use std::ops::AsyncFnMut;
use std::time::{Duration, Instant};

/// Asks `probe` until it answers `Some`, at most until `within` has passed; `None` then.
///
/// The pause between two asks is `every`, or twice what the last ask cost when that is
/// longer: a costly probe (listing 10,000 objects in the bench) then takes at most a
/// third of a CPU from the operator being measured.
pub async fn poll<T>(
    within: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        let asked = Instant::now();
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every.max(asked.elapsed() * 2)).await;
    }
}
