//! The reconcile loop: N workers pull keys from the [`WorkQueue`] and run the reconcile
//! function on them.
//!
//! - A key is reconciled by one worker at a time (the queue's contract), and at most
//!   `workers` reconciles run at once, which bounds the load on the API server and AWS.
//! - Success forgets the key's failure count; `Action::Requeue(d)` parks the key for `d`
//!   measured from the *end* of the reconcile, so a slow reconcile cannot make periodic
//!   work pile up. An error (or a panic) requeues the key with its per-key backoff.
//! - No key is reconciled before `ready` resolves (the caches' first full list): before
//!   that, an object missing from a cache proves nothing.
//! - On shutdown the queue stops handing out keys and the loop waits for the reconciles
//!   in flight, so none is cut off between two writes. Aborting the join handle aborts
//!   the workers and their reconciles (the second, impatient stage of a shutdown).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::runtime::metrics::MetricsHandle;
use crate::runtime::queue::WorkQueue;
use crate::runtime::shutdown_requested;

/// What a successful reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Run again this long after this reconcile ended (e.g. before a token expires).
    Requeue(Duration),
    /// Nothing to do until a watched object changes.
    AwaitChange,
}

/// Counters of one controller, read by the metrics endpoint.
#[derive(Debug, Default)]
pub(crate) struct ControllerStats {
    reconciles: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicU64,
}

/// What a controller did, returned by its join handle when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ControllerReport {
    /// Reconciles that returned `Ok`.
    pub reconciles: u64,
    /// Reconciles that returned `Err` or panicked.
    pub failures: u64,
}

// === impl ControllerStats ===

impl ControllerStats {
    /// Reconciles that returned `Ok` so far.
    pub(crate) fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Reconciles that returned `Err` or panicked so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Reconciles running right now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn report(&self) -> ControllerReport {
        ControllerReport {
            reconciles: self.reconciles(),
            failures: self.failures(),
        }
    }
}

/// Settings of one controller.
#[derive(Clone, Debug)]
pub(crate) struct ControllerConfig {
    /// Names the controller in logs.
    pub name: String,
    /// How many reconciles may run at once (at least 1).
    pub workers: usize,
    /// Where the workers report each reconcile, as well as to [`Controller::stats`].
    pub metrics: MetricsHandle,
}

// === impl ControllerConfig ===

impl ControllerConfig {
    /// `workers` is raised to 1; metrics go nowhere until [`Self::with_metrics`].
    #[must_use]
    pub(crate) fn new(name: impl Into<String>, workers: usize) -> ControllerConfig {
        ControllerConfig {
            name: name.into(),
            workers: workers.max(1),
            metrics: MetricsHandle::default(),
        }
    }

    /// Reports every reconcile to `metrics` as well.
    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_metrics(self, metrics: MetricsHandle) -> ControllerConfig {
        ControllerConfig { metrics, ..self }
    }
}

/// A running controller: its counters, and a handle that resolves after shutdown with
/// the final counts.
pub(crate) struct Controller {
    /// Live counters, readable while the controller runs (the tests read them; the
    /// operator reads the metrics the workers report to).
    #[cfg(test)]
    pub(crate) stats: Arc<ControllerStats>,
    /// Resolves after shutdown and drain; aborting it aborts the reconciles in flight.
    pub task: JoinHandle<ControllerReport>,
}

/// Starts the workers once `ready` resolves; they run `reconcile` on keys from `queue`
/// until `shutdown`, then drain. Enqueue keys from watch events (and an initial pass)
/// with `queue.add`.
pub(crate) fn spawn_controller<K, F, Fut, E, R>(
    queue: WorkQueue<K>,
    config: ControllerConfig,
    reconcile: F,
    ready: R,
    mut shutdown: watch::Receiver<bool>,
) -> Controller
where
    K: Clone + Eq + Hash + Ord + fmt::Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
    R: Future<Output = ()> + Send + 'static,
{
    let stats = Arc::new(ControllerStats::default());
    let reconcile = Arc::new(reconcile);
    let task = {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut workers = JoinSet::new();
            tokio::select! {
                biased;
                _ = shutdown_requested(&mut shutdown) => {}
                _ = ready => {
                    tracing::debug!(controller = %config.name, workers = config.workers, "caches synced; reconciling");
                    for _ in 0..config.workers {
                        let tally = Tally {
                            stats: Arc::clone(&stats),
                            metrics: config.metrics.clone(),
                            name: config.name.clone(),
                        };
                        workers.spawn(work(queue.clone(), Arc::clone(&reconcile), tally));
                    }
                    shutdown_requested(&mut shutdown).await;
                }
            }
            tracing::debug!(controller = %config.name, "shutting down; draining reconciles in flight");
            queue.shut_down_with_drain().await;
            while workers.join_next().await.is_some() {}
            stats.report()
        })
    };
    Controller {
        #[cfg(test)]
        stats,
        task,
    }
}

/// Where a worker records what its reconciles did: the controller's counters and the
/// metrics handed in, always both.
struct Tally {
    stats: Arc<ControllerStats>,
    metrics: MetricsHandle,
    name: String,
}

// === impl Tally ===

impl Tally {
    fn started(&self) {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.reconcile_started(&self.name);
    }

    fn finished(&self, ok: bool) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let counter = if ok {
            &self.stats.reconciles
        } else {
            &self.stats.failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.metrics.reconcile_finished(&self.name, ok);
    }
}

/// One worker: take a key, reconcile it, record the outcome, repeat until shutdown.
async fn work<K, F, Fut, E>(queue: WorkQueue<K>, reconcile: Arc<F>, tally: Tally)
where
    K: Clone + Eq + Hash + Ord + fmt::Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    while let Some(key) = queue.get().await {
        tally.started();
        // A task of its own, so that a panic fails this reconcile instead of killing
        // the worker (and leaving the key marked processing forever).
        let mut run = AbortOnDrop(tokio::spawn(reconcile(key.clone())));
        let outcome = (&mut run.0).await;
        tally.finished(matches!(outcome, Ok(Ok(_))));
        match outcome {
            Ok(Ok(action)) => {
                queue.forget(&key);
                if let Action::Requeue(after) = action {
                    // Now is the end of the reconcile: the period runs from here.
                    queue.add_after(key.clone(), after);
                }
            }
            Ok(Err(error)) => {
                let retry_in = queue.add_rate_limited(key.clone());
                tracing::warn!(controller = %tally.name, key = %key, error = %error, retry_in = ?retry_in, "reconcile failed");
            }
            Err(join_error) => {
                let retry_in = queue.add_rate_limited(key.clone());
                let what = if join_error.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                tracing::error!(controller = %tally.name, key = %key, retry_in = ?retry_in, "reconcile {what}");
            }
        }
        queue.done(&key);
    }
}

/// Aborts the task when dropped, so aborting a worker aborts its reconcile too.
struct AbortOnDrop<T>(JoinHandle<T>);

// === impl AbortOnDrop ===

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
