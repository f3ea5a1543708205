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
//! - Failures back off per key: `add_rate_limited` doubles from [`FAILURE_BASE`] up to
//!   [`FAILURE_MAX`]; `forget` clears the count after a success.
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

/// First retry after a failed reconcile. One second absorbs a conflict or a blip
/// without making the operator feel slow.
pub const FAILURE_BASE: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failing key. Five minutes keeps a persistently
/// failing key (missing IAM permission, say) from burning API quota, while a fix is
/// still picked up well within a token's 12-hour lifetime.
pub const FAILURE_MAX: Duration = Duration::from_secs(300);

/// A cheap-to-clone handle on a shared work queue; see the module docs for the contract.
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    /// Woken when a key becomes ready, when a key is done, and at shutdown.
    changed: Notify,
    failure_base: Duration,
    failure_max: Duration,
}

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// When each parked key is due, with `parked_by_time` as its index by time.
    parked: HashMap<K, Instant>,
    parked_by_time: BTreeSet<(Instant, K)>,
    failures: HashMap<K, u32>,
    shutting_down: bool,
}

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

// === impl WorkQueue ===

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// A queue whose failures back off from [`FAILURE_BASE`] to [`FAILURE_MAX`].
    #[must_use]
    pub fn new() -> WorkQueue<K> {
        Self::with_failure_backoff(FAILURE_BASE, FAILURE_MAX)
    }

    /// A queue with its own failure backoff (a zero base is raised to 1 ms so that
    /// doubling works; a max below the base is raised to the base).
    #[must_use]
    pub fn with_failure_backoff(base: Duration, max: Duration) -> WorkQueue<K> {
        let base = base.max(Duration::from_millis(1));
        WorkQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    parked: HashMap::new(),
                    parked_by_time: BTreeSet::new(),
                    failures: HashMap::new(),
                    shutting_down: false,
                }),
                changed: Notify::new(),
                failure_base: base,
                failure_max: max.max(base),
            }),
        }
    }

    /// Marks `key` as needing a reconcile (collapsing with a pending one).
    pub fn add(&self, key: K) {
        let mut st = self.lock();
        if st.add(key) {
            self.shared.changed.notify_waiters();
        }
    }

    /// Adds `key` once `delay` has passed; an earlier pending time for it wins. A delay
    /// too large for the clock to represent means never.
    pub fn add_after(&self, key: K, delay: Duration) {
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
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let delay = {
            let mut st = self.lock();
            let failures = st.failures.entry(key.clone()).or_insert(0);
            let delay = failure_delay(self.shared.failure_base, self.shared.failure_max, *failures);
            *failures = failures.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
        delay
    }

    /// Clears the failure count of `key` (after a successful reconcile).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// How many failures in a row `key` has had.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Waits for the next ready key and marks it processing; `None` once shut down.
    /// The caller must call [`WorkQueue::done`] with the key when finished.
    pub async fn get(&self) -> Option<K> {
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

    /// Like [`WorkQueue::get`] without waiting: the next ready key, if any.
    pub fn try_get(&self) -> Option<K> {
        let mut st = self.lock();
        if st.shutting_down {
            return None;
        }
        st.pop_ready(Instant::now())
    }

    /// Ends the processing of `key`; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut st = self.lock();
        st.processing.remove(key);
        if !st.shutting_down && st.dirty.contains(key) {
            st.queue.push_back(key.clone());
        }
        self.shared.changed.notify_waiters();
    }

    /// Keys ready for a worker now (the queue-depth metric).
    pub fn len(&self) -> usize {
        let mut st = self.lock();
        st.promote_due(Instant::now());
        st.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys parked for later (requeues and failure backoffs).
    pub fn parked_len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Keys held by workers right now.
    pub fn processing_len(&self) -> usize {
        self.lock().processing.len()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Stops intake: `get` returns `None` from now on, adds are ignored, queued and
    /// parked keys are dropped (the next process relists and re-adds everything, so
    /// nothing is lost that matters). Keys being processed stay processing until `done`.
    pub fn shut_down(&self) {
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
    pub async fn shut_down_with_drain(&self) {
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

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A panic while holding this lock cannot leave the sets half-updated in a way
        // that breaks the contract worse than losing the queue, so poison is ignored.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl State ===

impl<K: Clone + Eq + Hash + Ord> State<K> {
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

/// `base * 2^failures`, capped at `max`, without overflow.
fn failure_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn collapse() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_get(), Some("a"));
        assert_eq!(q.try_get(), Some("b"));
        assert_eq!(q.try_get(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn add_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        let held = q.get().await.unwrap();
        q.add("a");
        q.add("a");
        // Held by a worker: a second worker must not get it.
        assert_eq!(q.try_get(), None);
        assert_eq!(q.len(), 0);
        q.done(&held);
        // The re-add during processing is queued by `done`, once.
        assert_eq!(q.try_get(), Some("a"));
        assert_eq!(q.try_get(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn done_without_readd_drops_the_key() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.try_get().unwrap();
        q.done(&k);
        assert_eq!(q.try_get(), None);
        assert_eq!(q.processing_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reinsert() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.try_get().unwrap();
        q.done(&k);
        q.add("a");
        assert_eq!(q.try_get(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_order() {
        let q = WorkQueue::new();
        for k in [3, 1, 2] {
            q.add(k);
        }
        let got: Vec<_> = std::iter::from_fn(|| q.try_get()).collect();
        assert_eq!(got, vec![3, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_key_becomes_ready() {
        let q = WorkQueue::new();
        q.add_after("a", ms(500));
        assert_eq!(q.try_get(), None);
        assert_eq!(q.parked_len(), 1);
        let start = Instant::now();
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(start.elapsed(), ms(500));
    }

    #[tokio::test(start_paused = true)]
    async fn unrepresentable_delay_means_never_and_does_not_panic() {
        let q = WorkQueue::new();
        q.add_after("a", Duration::MAX);
        assert_eq!(q.parked_len(), 0);
        assert_eq!(q.try_get(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_delay_wins() {
        let q = WorkQueue::new();
        q.add_after("a", ms(1000));
        q.add_after("a", ms(200));
        q.add_after("a", ms(700));
        let start = Instant::now();
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(start.elapsed(), ms(200));
        q.done(&"a");
        // The later requests were served by the earlier one: nothing is parked.
        assert_eq!(q.parked_len(), 0);
        tokio::time::advance(ms(2000)).await;
        assert_eq!(q.try_get(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn add_serves_a_parked_request() {
        let q = WorkQueue::new();
        q.add_after("a", ms(1000));
        q.add("a");
        assert_eq!(q.parked_len(), 0);
        assert_eq!(q.try_get(), Some("a"));
        q.done(&"a");
        tokio::time::advance(ms(2000)).await;
        assert_eq!(q.try_get(), None, "served request handed out twice");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_add_of_a_dirty_key_is_served_by_the_pending_reconcile() {
        let q = WorkQueue::new();
        q.add("a");
        q.add_after("a", ms(500));
        assert_eq!(q.parked_len(), 0);
        assert_eq!(q.try_get(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_add_while_processing_is_kept() {
        // The periodic requeue: a reconcile asks to run again later.
        let q = WorkQueue::new();
        q.add("a");
        let k = q.try_get().unwrap();
        q.add_after("a", ms(500));
        q.done(&k);
        assert_eq!(q.try_get(), None);
        let start = Instant::now();
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(start.elapsed(), ms(500));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_get_wakes_for_an_earlier_delay() {
        let q = WorkQueue::new();
        q.add_after("late", ms(10_000));
        let q2 = q.clone();
        let start = Instant::now();
        let worker = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.add_after("soon", ms(100));
        assert_eq!(worker.await.unwrap(), Some("soon"));
        assert_eq!(start.elapsed(), ms(100));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_get_wakes_on_add() {
        let q = WorkQueue::new();
        let q2 = q.clone();
        let worker = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.add(7);
        assert_eq!(worker.await.unwrap(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_key_due_while_processing_waits_for_done() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.try_get().unwrap();
        q.add_after("a", ms(100));
        tokio::time::advance(ms(150)).await;
        assert_eq!(q.try_get(), None, "handed out while processing");
        q.done(&k);
        assert_eq!(q.try_get(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_per_failure() {
        let q = WorkQueue::new();
        let delays: Vec<_> = (0..4).map(|_| q.add_rate_limited("a")).collect();
        assert_eq!(delays, vec![ms(1000), ms(2000), ms(4000), ms(8000)]);
        assert_eq!(q.failures(&"a"), 4);
        // Failures of one key do not slow down another.
        assert_eq!(q.add_rate_limited("b"), ms(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_cap() {
        let q = WorkQueue::new();
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            last = q.add_rate_limited("a");
        }
        assert_eq!(last, FAILURE_MAX);
        assert_eq!(
            failure_delay(FAILURE_BASE, FAILURE_MAX, u32::MAX),
            FAILURE_MAX
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_key_is_handed_out_after_its_backoff() {
        let q = WorkQueue::new();
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        let start = Instant::now();
        assert_eq!(q.get().await, Some("a"));
        // Earliest wins: the first (1 s) parking serves both failures.
        assert_eq!(start.elapsed(), ms(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn forget_on_success() {
        let q = WorkQueue::new();
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
        assert_eq!(q.add_rate_limited("a"), FAILURE_BASE);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_wakes_waiting_workers_with_none() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let q2 = q.clone();
        let worker = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), None);
        q.add(1);
        assert_eq!(q.try_get(), None, "intake continued after shutdown");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drain() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        let held = q.get().await.unwrap();
        let q2 = q.clone();
        let drained = tokio::spawn(async move { q2.shut_down_with_drain().await });
        tokio::time::sleep(ms(300)).await;
        assert!(
            !drained.is_finished(),
            "drain returned with a key in flight"
        );
        assert_eq!(
            q.get().await,
            None,
            "a queued key was handed out after shutdown"
        );
        q.done(&held);
        drained.await.unwrap();
        assert_eq!(q.processing_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drain_with_nothing_in_flight_returns_at_once() {
        let q: WorkQueue<u8> = WorkQueue::new();
        q.add_after(1, ms(100));
        q.shut_down_with_drain().await;
        assert_eq!(q.parked_len(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8),
        AddAfter(u8, u16),
        AddRateLimited(u8),
        Forget(u8),
        Get(usize),
        Done(usize),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6).prop_map(Op::Add),
            2 => (0u8..6, 1u16..3000).prop_map(|(k, d)| Op::AddAfter(k, d)),
            1 => (0u8..6).prop_map(Op::AddRateLimited),
            1 => (0u8..6).prop_map(Op::Forget),
            4 => (0usize..3).prop_map(Op::Get),
            4 => (0usize..3).prop_map(Op::Done),
            2 => (1u16..2000).prop_map(Op::Advance),
        ]
    }

    /// What the model owes: an immediate add is owed a handout from now on; a delayed
    /// add is owed one at or after its (earliest) due time.
    #[derive(Default)]
    struct Owed {
        now: BTreeSet<u8>,
        at: BTreeMap<u8, Instant>,
    }

    impl Owed {
        /// An immediate add serves any later request for the key.
        fn add(&mut self, k: u8) {
            self.now.insert(k);
            self.at.remove(&k);
        }

        /// A pending reconcile (dirty key, earlier due time) serves a delayed add.
        fn add_at(&mut self, k: u8, at: Instant) {
            if !self.now.contains(&k) {
                let e = self.at.entry(k).or_insert(at);
                *e = (*e).min(at);
            }
        }

        /// A handout of `k` at `now` pays what is due; returns whether anything was.
        fn pay(&mut self, k: u8, now: Instant) -> bool {
            let mut paid = self.now.remove(&k);
            if self.at.get(&k).is_some_and(|at| *at <= now) {
                self.at.remove(&k);
                paid = true;
            }
            paid
        }
    }

    fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let q = WorkQueue::with_failure_backoff(ms(100), ms(1000));
            let mut workers: [Option<u8>; 3] = [None; 3];
            let mut owed = Owed::default();
            let handout = |k: u8,
                           w: usize,
                           workers: &mut [Option<u8>; 3],
                           owed: &mut Owed|
             -> Result<(), TestCaseError> {
                prop_assert!(
                    !workers.contains(&Some(k)),
                    "key {k} handed to a second worker"
                );
                prop_assert!(owed.pay(k, Instant::now()), "key {k} handed out unasked");
                workers[w] = Some(k);
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Add(k) => {
                        q.add(k);
                        owed.add(k);
                    }
                    Op::AddAfter(k, d) => {
                        q.add_after(k, ms(d.into()));
                        owed.add_at(k, Instant::now() + ms(d.into()));
                    }
                    Op::AddRateLimited(k) => {
                        let d = q.add_rate_limited(k);
                        owed.add_at(k, Instant::now() + d);
                    }
                    Op::Forget(k) => q.forget(&k),
                    Op::Get(w) => {
                        if workers[w].is_none() {
                            if let Some(k) = q.try_get() {
                                handout(k, w, &mut workers, &mut owed)?;
                            }
                        }
                    }
                    Op::Done(w) => {
                        if let Some(k) = workers[w].take() {
                            q.done(&k);
                        }
                    }
                    Op::Advance(d) => tokio::time::advance(ms(d.into())).await,
                }
            }
            // Finish: every worker completes, time passes every delay, and the queue is
            // drained by one worker until nothing is owed.
            for held in workers.iter_mut() {
                if let Some(k) = held.take() {
                    q.done(&k);
                }
            }
            tokio::time::advance(ms(10_000)).await;
            while let Some(k) = q.try_get() {
                handout(k, 0, &mut workers, &mut owed)?;
                workers[0] = None;
                q.done(&k);
            }
            prop_assert!(owed.now.is_empty(), "lost adds: {:?}", owed.now);
            prop_assert!(owed.at.is_empty(), "lost delayed adds: {:?}", owed.at);
            prop_assert_eq!(q.processing_len(), 0);
            prop_assert_eq!(q.parked_len(), 0);
            Ok(())
        })
    }

    proptest! {
        #[test]
        fn random_operations_keep_the_contract(ops in proptest::collection::vec(op(), 1..120)) {
            run_ops(ops)?;
        }
    }
}
