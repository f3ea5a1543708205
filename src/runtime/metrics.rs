//! What the runtime reports about itself, handed in rather than reached through a global.
//!
//! Watchers, controllers and the leader elector call the [`RuntimeMetrics`] their
//! constructor was given (client-go's `MetricsProvider`); the application decides what,
//! if anything, to export. The default handle records nothing, so tests and other users
//! of the runtime need no registry, and the runtime depends on no exposition format.
//! The operator exports leadership only (README's metrics table), so only its elector
//! is given a handle; the watch and reconcile hooks keep their default and are driven by
//! the runtime's own tests (`with_metrics` on watchers and controllers is test-only).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Receives the runtime's reports. Every method has a no-op default, so an
/// implementation overrides only what it exports. Calls come from the runtime's tasks
/// (possibly several at once) and must not block.
///
/// `watch` and `controller` are the names given to [`crate::runtime::watcher::WatcherConfig`]
/// and [`crate::runtime::controller::ControllerConfig`]. They are chosen by the
/// application and may be unbounded or name a Secret: an exporter turns them into label
/// values only for names it knows to be a short, fixed vocabulary.
pub(crate) trait RuntimeMetrics: Send + Sync + 'static {
    /// This replica started (`true`) or stopped (`false`) leading.
    fn leader(&self, leading: bool) {
        let _ = leading;
    }

    /// The reflector named `watch` completed a full list (the first one or a relist).
    fn watch_listed(&self, watch: &str) {
        let _ = watch;
    }

    /// The reflector named `watch` applied one watch event (bookmarks excluded).
    fn watch_event(&self, watch: &str) {
        let _ = watch;
    }

    /// The reflector named `watch` failed and backs off; `expired` when a 410 forces a
    /// relist (routine after etcd compaction).
    fn watch_failed(&self, watch: &str, expired: bool) {
        let _ = (watch, expired);
    }

    /// The controller named `controller` started a reconcile.
    fn reconcile_started(&self, controller: &str) {
        let _ = controller;
    }

    /// The controller named `controller` finished a reconcile: `ok` when it returned
    /// `Ok`, not when it failed or panicked.
    fn reconcile_finished(&self, controller: &str, ok: bool) {
        let _ = (controller, ok);
    }
}

/// Records nothing: the default of every runtime component.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NoMetrics;

// === impl NoMetrics ===

impl RuntimeMetrics for NoMetrics {}

/// A cheap-to-clone, shared [`RuntimeMetrics`], as runtime configurations hold it.
#[derive(Clone)]
pub(crate) struct MetricsHandle(Arc<dyn RuntimeMetrics>);

// === impl MetricsHandle ===

impl MetricsHandle {
    /// Shares `metrics` with every component given a clone of the handle.
    pub(crate) fn new(metrics: impl RuntimeMetrics) -> MetricsHandle {
        MetricsHandle(Arc::new(metrics))
    }

    /// Reports to `metrics`, which its owner keeps reading (rendering, say).
    pub(crate) fn shared(metrics: Arc<dyn RuntimeMetrics>) -> MetricsHandle {
        MetricsHandle(metrics)
    }
}

impl Default for MetricsHandle {
    fn default() -> Self {
        MetricsHandle::new(NoMetrics)
    }
}

impl Deref for MetricsHandle {
    type Target = dyn RuntimeMetrics;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsHandle")
    }
}

/// Records every report, for the runtime's own tests.
#[cfg(test)]
pub(crate) mod recording {
    use std::sync::{Arc, Mutex};

    use super::{MetricsHandle, RuntimeMetrics};

    /// The reports received so far, one line each, e.g. `watch_listed test`.
    #[derive(Clone, Default)]
    pub(crate) struct Recording(Arc<Mutex<Vec<String>>>);

    impl Recording {
        pub(crate) fn handle(&self) -> MetricsHandle {
            MetricsHandle::new(self.clone())
        }

        pub(crate) fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }

        pub(crate) fn count(&self, line: &str) -> usize {
            self.lines().iter().filter(|l| *l == line).count()
        }

        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    impl RuntimeMetrics for Recording {
        fn leader(&self, leading: bool) {
            self.push(format!("leader {leading}"));
        }

        fn watch_listed(&self, watch: &str) {
            self.push(format!("watch_listed {watch}"));
        }

        fn watch_event(&self, watch: &str) {
            self.push(format!("watch_event {watch}"));
        }

        fn watch_failed(&self, watch: &str, expired: bool) {
            self.push(format!("watch_failed {watch} {expired}"));
        }

        fn reconcile_started(&self, controller: &str) {
            self.push(format!("reconcile_started {controller}"));
        }

        fn reconcile_finished(&self, controller: &str, ok: bool) {
            self.push(format!("reconcile_finished {controller} {ok}"));
        }
    }
}
