//! A work queue of object keys for reconcile workers, after client-go's workqueue.
//!
//! # Contract
//!
//! Every key the queue knows is in some of three places:
//!
//! - **dirty**: the key needs (another) reconcile. A key in `queue` is always dirty.
//! - **processing**: a worker holds the key (between [`WorkQueue::get`] and
//!   [`WorkQueue::done`]).
//! - **queue**: dirty and not processing, waiting for a worker, in FIFO order.
//!
//! Rules that follow:
//!
//! - Adding a dirty key does nothing: any number of adds before a worker picks the key
//!   up collapse into one reconcile (a reconcile reads the latest state anyway).
//! - A key being processed is never handed to a second worker: adding it marks it dirty
//!   only, and `done` puts it back in `queue`. So a change seen during a reconcile is
//!   never lost, and never reconciled concurrently with itself.
//! - `add_after` parks the key until its time. A reconcile already due earlier serves
//!   any later request (it reads the latest state and decides its own next requeue):
//!   parking a parked key keeps the earlier time, parking a dirty key does nothing, and
//!   `add` drops the key's parked entry.
//! - Failures back off per key: `add_rate_limited` doubles from `backoff::FAILURE_BASE`
//!   up to `FAILURE_MAX` ([`Backoff::for_reconcile_failures`]); `forget` clears the count
//!   after a success.
//! - After shutdown, `get` returns `None` and adds are ignored;
//!   `shut_down_with_drain` also waits until every key handed out is `done`.
//!
//! Time is tokio's clock, so tests drive it with paused time. Parked keys are moved to
//! `queue` lazily, by whoever looks next (`get`, `try_get`, `len`): a waiting `get`
//! sleeps exactly until the earliest parked key is due, so no timer task is needed.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::Backoff;

/// A cheap-to-clone handle on a shared work queue; see the module docs for the contract.
pub(crate) struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    state: Mutex<QueueState<K>>,
    /// Woken when a key becomes ready, when a key is done, and at shutdown.
    changed: Notify,
    /// Per-key failures wait `base_delay(failures)` of it (no jitter: keys failing
    /// together are already spread by when their reconciles ran).
    failures: Backoff,
}

struct QueueState<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// When each parked key is due, with `parked_by_time` as its index by time.
    parked: HashMap<K, Instant>,
    parked_by_time: BTreeSet<(Instant, K)>,
    failures: HashMap<K, u32>,
    shutting_down: bool,
}

// === impl WorkQueue ===

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// A queue whose failures back off by [`Backoff::for_reconcile_failures`].
    #[must_use]
    pub(crate) fn new() -> WorkQueue<K> {
        Self::with_backoff(Backoff::for_reconcile_failures())
    }

    /// A queue with its own failure backoff, doubling from `base` to `max` (see
    /// [`Backoff::doubling`] for how out-of-range values are raised).
    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_failure_backoff(base: Duration, max: Duration) -> WorkQueue<K> {
        Self::with_backoff(Backoff::doubling(base, max))
    }

    fn with_backoff(failures: Backoff) -> WorkQueue<K> {
        WorkQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(QueueState {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    parked: HashMap::new(),
                    parked_by_time: BTreeSet::new(),
                    failures: HashMap::new(),
                    shutting_down: false,
                }),
                changed: Notify::new(),
                failures,
            }),
        }
    }

    /// Marks `key` as needing a reconcile (collapsing with a pending one).
    pub(crate) fn add(&self, key: K) {
        let mut st = self.lock();
        if st.add(key) {
            self.shared.changed.notify_waiters();
        }
    }

    /// Adds `key` once `delay` has passed; an earlier pending time for it wins. A delay
    /// too large for the clock to represent means never.
    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut st = self.lock();
        if st.shutting_down {
            return;
        }
        let Some(at) = Instant::now().checked_add(delay) else {
            return;
        };
        if st.park(key, at) {
            // A waiting `get` may be sleeping until a later time than `at`.
            self.shared.changed.notify_waiters();
        }
    }

    /// Records a failure of `key` and adds it after its backoff; returns that delay.
    pub(crate) fn add_rate_limited(&self, key: K) -> Duration {
        let delay = {
            let mut st = self.lock();
            let failures = st.failures.entry(key.clone()).or_insert(0);
            let delay = self.shared.failures.base_delay(*failures);
            *failures = failures.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
        delay
    }

    /// Clears the failure count of `key` (after a successful reconcile).
    pub(crate) fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next ready key and marks it processing; `None` once shut down.
    /// The caller must call [`WorkQueue::done`] with the key when finished.
    pub(crate) async fn get(&self) -> Option<K> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            let wake_at = {
                let mut st = self.lock();
                if st.shutting_down {
                    return None;
                }
                if let Some(key) = st.pop_ready(Instant::now()) {
                    return Some(key);
                }
                // Registered before the lock is released, so an add between here and
                // the await below is not missed.
                changed.as_mut().enable();
                st.parked_by_time.first().map(|(at, _)| *at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Ends the processing of `key`; if it was added meanwhile, it is queued again.
    pub(crate) fn done(&self, key: &K) {
        let mut st = self.lock();
        st.processing.remove(key);
        if !st.shutting_down && st.dirty.contains(key) {
            st.queue.push_back(key.clone());
        }
        self.shared.changed.notify_waiters();
    }

    /// Keys ready for a worker now (the queue-depth metric).
    pub(crate) fn len(&self) -> usize {
        let mut st = self.lock();
        st.promote_due(Instant::now());
        st.queue.len()
    }

    /// Whether no key is ready for a worker now (parked and processing keys aside).
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys parked for later (requeues and failure backoffs).
    #[cfg(test)]
    pub(crate) fn parked_len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Keys held by workers right now.
    pub(crate) fn processing_len(&self) -> usize {
        self.lock().processing.len()
    }

    /// Stops intake: `get` returns `None` from now on, adds are ignored, queued and
    /// parked keys are dropped (the next process relists and re-adds everything, so
    /// nothing is lost that matters). Keys being processed stay processing until `done`.
    pub(crate) fn shut_down(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        st.queue.clear();
        st.dirty.clear();
        st.parked.clear();
        st.parked_by_time.clear();
        self.shared.changed.notify_waiters();
    }

    /// [`WorkQueue::shut_down`], then waits until every key handed out is `done`, so
    /// that no reconcile is cut off halfway through its writes.
    pub(crate) async fn shut_down_with_drain(&self) {
        self.shut_down();
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            {
                let st = self.lock();
                if st.processing.is_empty() {
                    return;
                }
                changed.as_mut().enable();
            }
            changed.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<K>> {
        // A panic while holding this lock cannot leave the sets half-updated in a way
        // that breaks the contract worse than losing the queue, so poison is ignored.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl QueueState ===

impl<K: Clone + Eq + Hash + Ord> QueueState<K> {
    /// Returns whether the key became ready for a worker.
    fn add(&mut self, key: K) -> bool {
        if self.shutting_down {
            return false;
        }
        if let Some(at) = self.parked.remove(&key) {
            self.parked_by_time.remove(&(at, key.clone()));
        }
        if self.dirty.contains(&key) {
            return false;
        }
        self.dirty.insert(key.clone());
        if self.processing.contains(&key) {
            return false;
        }
        self.queue.push_back(key);
        true
    }

    /// Returns whether the key's due time moved earlier (or it was newly parked).
    fn park(&mut self, key: K, at: Instant) -> bool {
        if self.dirty.contains(&key) {
            return false;
        }
        if let Some(existing) = self.parked.get(&key).copied() {
            if existing <= at {
                return false;
            }
            self.parked_by_time.remove(&(existing, key.clone()));
        }
        self.parked.insert(key.clone(), at);
        self.parked_by_time.insert((at, key));
        true
    }

    fn promote_due(&mut self, now: Instant) {
        while let Some((at, _)) = self.parked_by_time.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.parked_by_time.pop_first() {
                self.parked.remove(&key);
                self.add(key);
            }
        }
    }

    fn pop_ready(&mut self, now: Instant) -> Option<K> {
        self.promote_due(now);
        let key = self.queue.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }
}

// === impl WorkQueue (test accessors) ===

/// What the tests observe beyond the contract's own operations.
#[cfg(test)]
impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// How many failures in a row `key` has had.
    pub(crate) fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Like [`WorkQueue::get`] without waiting: the next ready key, if any.
    pub(crate) fn try_get(&self) -> Option<K> {
        let mut st = self.lock();
        if st.shutting_down {
            return None;
        }
        st.pop_ready(Instant::now())
    }
}

#[cfg(test)]
mod tests;
