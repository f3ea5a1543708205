//! The controller machinery: list+watch, stores, the work queue, leader election
//! (the retry policy they wait by is [`crate::backoff`]).
//!
//! How the pieces fit (one controller):
//!
//! ```text
//! API server --list/watch--> watcher (pure state machine + driver, backoff outside)
//!                               |  store first: Store<P> (projection, synced flag)
//!                               v  then on_event(Event<T>) -> queue.add(key)
//!                            WorkQueue<K> (dirty/processing, delays, per-key backoff)
//!                               |  get/done
//!                               v
//!                            controller: N workers -> reconcile(key) -> Action
//! ```
//!
//! Background tasks here take a shutdown signal as a `tokio::sync::watch::Receiver<bool>`:
//! sending `true` (or dropping the sender) asks them to stop, and their join handles
//! resolve once they have (the controller after draining its reconciles in flight).

pub(crate) mod compact;
pub(crate) mod controller;
pub(crate) mod intern;
pub(crate) mod leader;
pub(crate) mod metrics;
pub(crate) mod queue;
pub(crate) mod store;
pub(crate) mod unwind;
pub(crate) mod watch_set;
pub(crate) mod watcher;

#[cfg(test)]
mod props;

pub(crate) use metrics::{MetricsHandle, RuntimeMetrics};

/// Resolves once shutdown is requested: `true` was sent, or the sender is gone (nobody
/// is left who could ever ask, so a task waiting on it would leak).
pub(crate) async fn shutdown_requested(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
