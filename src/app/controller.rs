//! The controller as the operator runs it: each reconcile timed, counted and isolated
//! from panics, and the queue depth reported.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::reconcile::reconciler::{ObservedState, ReconcileError, Reconciler};
use crate::reconcile::tokens::FetchToken;
use crate::runtime::queue::WorkQueue;
use crate::runtime::unwind::{self, catch_panic};

/// Keeps the queue-depth gauge current.
pub(crate) fn spawn_queue_gauge(
    queue: WorkQueue<String>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            metrics.set_queue_depth(queue.len());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = crate::runtime::shutdown_requested(&mut shutdown) => return,
            }
        }
    })
}

/// Runs one reconcile and records its duration and result. A panic (a bug) fails only
/// this reconcile: it is logged, counted and written into the CR's status, and the
/// controller retries it with backoff.
pub(crate) async fn timed_reconcile<F: FetchToken, S: ObservedState>(
    reconciler: &Reconciler<F, S>,
    name: &str,
) -> Result<crate::runtime::controller::Action, ReconcileError> {
    let started = Instant::now();
    let result = match catch_panic(reconciler.reconcile(name)).await {
        Ok(result) => result,
        Err(panic) => {
            tracing::error!(
                cr = name,
                panic = unwind::message(&panic),
                "reconcile panicked"
            );
            reconciler
                .metrics()
                .observe_reconcile(started.elapsed().as_secs_f64(), "panic");
            reconciler.report_panic(name).await;
            return Err(ReconcileError::Panicked);
        }
    };
    let label = if result.is_ok() { "success" } else { "error" };
    reconciler
        .metrics()
        .observe_reconcile(started.elapsed().as_secs_f64(), label);
    result
}
