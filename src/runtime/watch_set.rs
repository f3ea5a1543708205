//! A set of watches keyed by what they watch, each started the first time its key is
//! asked for and stopped once the owner prunes it.
//!
//! Some objects are worth watching only while something refers to them (a credentials
//! Secret a CR names, the shared pull secrets of one `secretName`): watching all of them
//! would cost a cluster-wide watch of every Secret. The set holds one watch per key, and
//! its contract is:
//!
//! - a key has at most one watch: the first [`WatchSet::get`] starts it (under the set's
//!   lock, so two callers racing for one key share one start), later calls share it;
//! - a watch runs for as long as its key is in the set: [`WatchSet::retain`] (or dropping
//!   the last clone of the set) aborts the watches it removes;
//! - what a watch publishes (its store, channels) is the value `start` returned, handed
//!   to every caller of that key.
//!
//! The set knows nothing of what is watched: `start`, passed in once, starts the
//! reflector for a key and installs its event handler. [`spawn_pruner`] prunes a moment
//! after the referrers change, so an edit storm prunes once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::shutdown_requested;

/// Starts the watch of one key: what its callers get, and the task to abort when the
/// key is pruned.
pub(crate) type StartWatch<K, V> = dyn Fn(&K) -> (V, JoinHandle<()>) + Send + Sync;

/// The watches of a set of keys, started on demand; cheap to clone (one set, shared).
pub(crate) struct WatchSet<K, V> {
    inner: Arc<Inner<K, V>>,
}

struct Inner<K, V> {
    watched: Mutex<HashMap<K, Watched<V>>>,
    start: Box<StartWatch<K, V>>,
}

/// One key's watch: what it publishes, and its task, aborted when the entry goes.
struct Watched<V> {
    value: V,
    task: JoinHandle<()>,
}

// === impl Watched ===

impl<V> Drop for Watched<V> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl WatchSet ===

impl<K, V> Clone for WatchSet<K, V> {
    fn clone(&self) -> Self {
        WatchSet {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> WatchSet<K, V> {
    /// An empty set whose watches `start` starts.
    pub(crate) fn new(start: impl Fn(&K) -> (V, JoinHandle<()>) + Send + Sync + 'static) -> Self {
        WatchSet {
            inner: Arc::new(Inner {
                watched: Mutex::new(HashMap::new()),
                start: Box::new(start),
            }),
        }
    }

    /// What `key`'s watch publishes, starting the watch on first use.
    pub(crate) fn get(&self, key: &K) -> V {
        let mut watched = self.lock();
        if let Some(w) = watched.get(key) {
            return w.value.clone();
        }
        let (value, task) = (self.inner.start)(key);
        watched.insert(
            key.clone(),
            Watched {
                value: value.clone(),
                task,
            },
        );
        value
    }

    /// What `key`'s watch publishes, if it is watched; starts nothing.
    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        self.lock().get(key).map(|w| w.value.clone())
    }

    /// What every watch publishes now.
    pub(crate) fn values(&self) -> Vec<V> {
        self.lock().values().map(|w| w.value.clone()).collect()
    }

    /// How many keys are watched now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Stops the watches of the keys `keep` refuses.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.lock().retain(|k, w| keep(k, &w.value));
    }

    /// A panic elsewhere while holding the lock leaves the map consistent (every change
    /// is one insert or one retain), so a poisoned lock is taken over, not propagated.
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Watched<V>>> {
        self.inner.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `prune` `delay` after each wake-up of `changed`, until shutdown. Wake-ups while
/// it waits collapse into one prune (a [`Notify`] stores one permit).
pub(crate) fn spawn_pruner(
    changed: Arc<Notify>,
    delay: Duration,
    prune: impl Fn() + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = changed.notified() => {}
                _ = shutdown_requested(&mut shutdown) => return,
            }
            tokio::time::sleep(delay).await;
            prune();
        }
    })
}

#[cfg(test)]
mod tests;
