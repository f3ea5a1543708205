use super::*;
use crate::backoff::{FAILURE_BASE, FAILURE_MAX};
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
    let q = WorkQueue::with_failure_backoff(ms(1000), FAILURE_MAX);
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
        Backoff::for_reconcile_failures().base_delay(u32::MAX),
        FAILURE_MAX
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limited_key_is_handed_out_after_its_backoff() {
    let q = WorkQueue::with_failure_backoff(ms(1000), FAILURE_MAX);
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
