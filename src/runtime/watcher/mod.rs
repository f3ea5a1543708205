//! List+watch of one collection, kept in a [`Store`](crate::runtime::store::Store), with
//! events for the controller.
//!
//! Two layers, as in kube-runtime:
//!
//! - A pure state machine (`machine.rs`, its `step` function):
//!   `Empty -> InitPage -> InitListed -> Watching`. It decides what to do with each
//!   answer (keep paging, relist, re-watch, emit) and is tested without a network. It
//!   owns no IO and no timer.
//! - A driver (`driver.rs`, [`spawn_reflector`]) that performs the IO the state asks for,
//!   feeds the answers to `step`, applies the outputs to the store and the caller's
//!   callback, and backs off after failures (0.8 s doubling to 30 s, reset after 2
//!   minutes of health). Backoff wraps the machine from outside.
//!
//! Semantics, after client-go's reflector:
//! - The initial list is paginated (`limit` 500, then `continue`); a page may be short or
//!   empty, so only the presence of `continue` decides whether another page follows.
//!   An expired continue token (410) restarts the list from scratch.
//! - The full list replaces the store at once: what it did not return is gone. The store
//!   is marked synced after the first full list.
//! - The watch starts at the list's resourceVersion with bookmarks and a server timeout
//!   of about 290 s (jittered, so watchers do not reconnect in lockstep); the client
//!   gives up on a stream silent for a little longer than that.
//! - Bookmarks advance the resourceVersion and emit nothing. A clean end of the stream
//!   re-watches from the last resourceVersion. 410, as an HTTP status or as an ERROR
//!   event (code 410, reason `Expired` or `Gone`), relists. resourceVersion is opaque.

use std::time::Duration;

mod driver;
mod machine;

pub(crate) use driver::spawn_reflector_into;
pub(crate) use driver::{spawn_reflector, KubeListWatch, WatcherConfig};
pub(crate) use machine::Event;

/// Page size of the initial list: client-go's choice, small enough for the API server to
/// serve from its cache without a spike, large enough that a few pages cover most
/// clusters.
pub(crate) const PAGE_SIZE: u32 = 500;
/// Server-side watch timeout, a little under the API server's 5-minute minimum request
/// timeout so the server ends watches cleanly rather than cutting them.
pub(crate) const WATCH_TIMEOUT_SECS: u32 = 290;
/// Up to this fraction of the watch timeout is shaved off at random per watch.
pub(crate) const WATCH_TIMEOUT_JITTER: f64 = 0.1;
/// How much longer than the server timeout a silent stream is given before the client
/// gives up on it: a dead connection (no FIN, no RST) must not stall the cache forever.
pub(crate) const IDLE_SLACK: Duration = Duration::from_secs(30);
/// A watch that ends cleanly sooner than this without a single event is treated as a
/// failure (and backed off), as client-go does: something between us and the API
/// server is closing streams, and re-watching at once would be a hot loop.
pub(crate) const MIN_WATCH_DURATION: Duration = Duration::from_secs(1);

#[cfg(test)]
mod emulated_tests;
#[cfg(test)]
mod fixtures;
