//! The tests' waits, over the one polling loop the demo and the bench use
//! ([`poll`], re-exported for probes that must await, such as an HTTP request): a probe is
//! asked every [`POLL`] until it holds or `within` has passed, and a timeout panics saying
//! what was awaited and what was last seen.

use std::fmt::Display;
use std::time::Duration;

pub(crate) use emulators::wait::poll;

use super::POLL;

/// Polls `probe` until it answers `Ok`, for at most `within`; returns the value. On
/// timeout panics with the last `Err` (the state seen), so the failure says what was
/// wrong.
pub(crate) async fn wait_for<T>(
    what: impl Display,
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
    found.unwrap_or_else(|| {
        panic!("timed out after {within:?} waiting for {what}; last seen: {last}")
    })
}

/// [`wait_for`] with a yes/no probe.
pub(crate) async fn wait_until(
    what: impl Display,
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
