//! Properties of the runtime pieces that the unit tests cover only sequentially or by
//! example: the work queue under real worker threads, the watch backoff with its health
//! reset, the backoff policy by attempt number (jitter bounds, saturation), and the AWS
//! retry delays.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aws::retry::RetryPolicy;
use crate::backoff::{
    Backoff, ResetAfterHealthy, FAILURE_BASE, FAILURE_MAX, WATCH_INITIAL, WATCH_MAX,
    WATCH_RESET_AFTER,
};
use crate::runtime::queue::WorkQueue;
use proptest::prelude::*;

const KEYS: u8 = 6;
const WORKERS: usize = 4;

/// Bookkeeping shared by the producer and the workers.
struct Ledger {
    /// Keys a worker holds right now.
    held: Mutex<HashSet<u8>>,
    /// Per key: the sequence number of its last add and of its last handout.
    last_add: Vec<AtomicU64>,
    last_handout: Vec<AtomicU64>,
    seq: AtomicU64,
    handouts: AtomicU64,
}

/// Runs `adds` (key, pause in µs before the next add) against `WORKERS` workers on a
/// multi-threaded runtime; returns an error naming a broken rule.
fn run_concurrent(adds: Vec<(u8, u16, bool)>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async move {
        let q: WorkQueue<u8> = WorkQueue::new();
        let ledger = Arc::new(Ledger {
            held: Mutex::new(HashSet::new()),
            last_add: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            last_handout: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            seq: AtomicU64::new(1),
            handouts: AtomicU64::new(0),
        });
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let (q, ledger) = (q.clone(), ledger.clone());
            workers.push(tokio::spawn(async move {
                while let Some(k) = q.get().await {
                    let seq = ledger.seq.fetch_add(1, Ordering::SeqCst);
                    ledger.last_handout[k as usize].store(seq, Ordering::SeqCst);
                    ledger.handouts.fetch_add(1, Ordering::SeqCst);
                    if !ledger.held.lock().unwrap().insert(k) {
                        return Err(format!("key {k} handed to a second worker"));
                    }
                    tokio::task::yield_now().await;
                    ledger.held.lock().unwrap().remove(&k);
                    q.done(&k);
                }
                Ok(())
            }));
        }
        for (k, pause, delayed) in adds {
            let k = k % KEYS;
            // Recorded before the add: a handout that starts after the add carries a
            // larger number, so "last handout > last add" means the add was served.
            let seq = ledger.seq.fetch_add(1, Ordering::SeqCst);
            ledger.last_add[k as usize].store(seq, Ordering::SeqCst);
            if delayed {
                q.add_after(k, Duration::from_micros(u64::from(pause) % 500));
            } else {
                q.add(k);
            }
            if pause % 3 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Drain: every add served, then stop the workers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let unserved: Vec<u8> = (0..KEYS)
                .filter(|k| {
                    let a = ledger.last_add[*k as usize].load(Ordering::SeqCst);
                    a > 0 && ledger.last_handout[*k as usize].load(Ordering::SeqCst) < a
                })
                .collect();
            if unserved.is_empty() && q.is_empty() && q.processing_len() == 0 && q.parked_len() == 0
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("adds never served for keys {unserved:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        q.shut_down();
        for w in workers {
            w.await.unwrap()?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn real_workers_never_share_a_key_and_every_add_is_served(
        adds in prop::collection::vec((0u8..KEYS, any::<u16>(), prop::bool::weighted(0.2)), 1..300),
    ) {
        run_concurrent(adds).map_err(TestCaseError::fail)?;
    }
}

/// One event for the watch backoff: a failure, or a success, after `after_ms`.
#[derive(Clone, Debug)]
enum Health {
    Failure(u32),
    Success(u32),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn watch_backoff_stays_bounded_and_forgets_after_two_healthy_minutes(
        events in prop::collection::vec(
            prop_oneof![
                (0u32..200_000).prop_map(Health::Failure),
                (0u32..200_000).prop_map(Health::Success),
            ],
            1..80,
        ),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut b = ResetAfterHealthy::for_watch_errors();
            let mut healthy_since: Option<tokio::time::Instant> = None;
            for e in events {
                let (after, failed) = match e {
                    Health::Failure(ms) => (ms, true),
                    Health::Success(ms) => (ms, false),
                };
                tokio::time::advance(Duration::from_millis(after.into())).await;
                let now = tokio::time::Instant::now();
                if !failed {
                    b.record_success(now);
                    healthy_since.get_or_insert(now);
                    continue;
                }
                let d = b.record_failure(now);
                prop_assert!(d <= WATCH_MAX, "{d:?} over the cap");
                prop_assert!(!d.is_zero());
                if healthy_since.take().is_some_and(|s| now - s >= WATCH_RESET_AFTER) {
                    prop_assert!(d <= WATCH_INITIAL, "{d:?} after two healthy minutes");
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn backoff_refuses_bad_parameters_instead_of_misbehaving(
        initial_ms in 0u64..10_000,
        max_ms in 0u64..100_000,
        factor in prop_oneof![any::<f64>(), 0.0f64..4.0],
        jitter in prop_oneof![any::<f64>(), 0.0f64..1.5],
    ) {
        let initial = Duration::from_millis(initial_ms);
        let max = Duration::from_millis(max_ms);
        match Backoff::new(initial, max, factor, jitter) {
            Ok(mut b) => {
                prop_assert!(!initial.is_zero() && max >= initial);
                prop_assert!(factor.is_finite() && factor >= 1.0);
                prop_assert!((0.0..=1.0).contains(&jitter));
                for _ in 0..40 {
                    prop_assert!(b.next_delay() <= max);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn aws_retry_delays_are_full_jitter_within_the_cap(
        base_ms in 1u64..5_000,
        cap_ms in 1u64..60_000,
        retry in 0u32..64,
    ) {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(base_ms),
            cap: Duration::from_millis(cap_ms),
        };
        let exp = Duration::from_millis(base_ms).saturating_mul(2u32.saturating_pow(retry.min(16)));
        let d = exp.min(p.cap);
        let got = p.delay(retry);
        prop_assert!(got <= d && got >= d / 2, "{got:?} outside [{:?}, {d:?}]", d / 2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn backoff_by_attempt_is_jittered_within_bounds_and_saturates(
        initial_ms in 1u64..10_000,
        extra_ms in 0u64..1_000_000,
        factor in 1.0f64..8.0,
        jitter in 0.0f64..=1.0,
        attempt in any::<u32>(),
    ) {
        let initial = Duration::from_millis(initial_ms);
        let max = initial + Duration::from_millis(extra_ms);
        let mut b = Backoff::new(initial, max, factor, jitter).unwrap();
        let base = b.base_delay(attempt);
        prop_assert!(base >= initial && base <= max, "{base:?} outside [{initial:?}, {max:?}]");
        let d = b.delay(attempt);
        prop_assert!(d <= base, "{d:?} above its base {base:?}");
        // mul_f64 rounds to the nanosecond.
        let floor = base.mul_f64(1.0 - jitter).saturating_sub(Duration::from_nanos(1));
        prop_assert!(d >= floor, "{d:?} below {floor:?}");
        prop_assert!(b.base_delay(attempt.saturating_add(1)) >= base);
    }

    #[test]
    fn backoff_at_huge_attempt_counts_waits_the_cap(
        initial_ms in 1u64..10_000,
        extra_ms in 0u64..1_000_000,
        factor in 1.01f64..8.0,
        attempt in 1_000_000u32..=u32::MAX,
    ) {
        let initial = Duration::from_millis(initial_ms);
        let max = initial + Duration::from_millis(extra_ms);
        let b = Backoff::new(initial, max, factor, 0.25).unwrap();
        prop_assert_eq!(b.base_delay(attempt), max);
    }

    #[test]
    fn reconcile_failure_backoff_is_the_one_default_at_any_failure_count(failures in any::<u32>()) {
        let b = Backoff::for_reconcile_failures();
        let d = b.base_delay(failures);
        prop_assert!(d >= FAILURE_BASE && d <= FAILURE_MAX);
        if failures < 8 {
            prop_assert_eq!(d, FAILURE_BASE * 2u32.pow(failures));
        }
    }
}
