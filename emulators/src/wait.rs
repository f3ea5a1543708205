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

/// How long a test's condition may take before it fails: generous for 2 busy cores; a
/// passing test returns as soon as the condition holds.
pub const WAIT: Duration = Duration::from_secs(15);
/// The pause between two looks at a test's condition.
pub const POLL: Duration = Duration::from_millis(25);

/// Polls `probe` every [`POLL`] until it answers `Ok`, for at most `within`; returns the
/// value. On timeout panics with the last `Err` (the state seen), so a failing test says
/// what was wrong instead of hanging.
pub async fn wait_for<T>(
    what: impl std::fmt::Display,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let mut last = String::new();
    let found = poll(within, POLL, async || match probe() {
        Ok(v) => Some(v),
        Err(seen) => {
            last = seen;
            None
        }
    })
    .await;
    match found {
        Some(v) => v,
        None => panic!("timed out after {within:?} waiting for {what}; last seen: {last}"),
    }
}

/// [`wait_for`] with a yes/no probe.
pub async fn wait_until(
    what: impl std::fmt::Display,
    within: Duration,
    mut probe: impl FnMut() -> bool,
) {
    wait_for(what, within, || {
        if probe() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await
}

/// [`wait_until`] with a probe that must await (an HTTP request, a scrape).
pub async fn wait_until_async(
    what: impl std::fmt::Display,
    within: Duration,
    mut probe: impl AsyncFnMut() -> bool,
) {
    if poll(within, POLL, async || probe().await.then_some(()))
        .await
        .is_none()
    {
        panic!("timed out after {within:?} waiting for {what}");
    }
}
