use super::*;
use proptest::prelude::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn refuses_zero_initial() {
    assert_eq!(
        Backoff::new(Duration::ZERO, secs(1.0), 2.0, 0.0).unwrap_err(),
        BackoffError::ZeroInitial
    );
}

#[test]
fn refuses_max_below_initial() {
    assert!(matches!(
        Backoff::new(secs(2.0), secs(1.0), 2.0, 0.0),
        Err(BackoffError::MaxBelowInitial { .. })
    ));
}

#[test]
fn refuses_shrinking_or_non_finite_factor() {
    for f in [0.5, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                Backoff::new(secs(1.0), secs(2.0), f, 0.0),
                Err(BackoffError::InvalidFactor(_))
            ),
            "factor {f} accepted"
        );
    }
}

#[test]
fn refuses_jitter_outside_unit_interval() {
    for j in [-0.1, 1.1, f64::NAN] {
        assert!(
            matches!(
                Backoff::new(secs(1.0), secs(2.0), 2.0, j),
                Err(BackoffError::InvalidJitter(_))
            ),
            "jitter {j} accepted"
        );
    }
}

#[test]
fn error_messages_name_the_parameter() {
    let msg = BackoffError::InvalidJitter(3.0).to_string();
    assert!(msg.contains("jitter") && msg.contains('3'), "{msg}");
}

#[test]
fn watch_policy_doubles_from_800ms_to_30s() {
    let mut b = Backoff::for_watch_errors();
    b.jitter = 0.0;
    let got: Vec<_> = (0..9).map(|_| b.next_delay()).collect();
    let want: Vec<_> = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0]
        .iter()
        .map(|s| secs(*s))
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!(g.abs_diff(*w) < Duration::from_micros(1), "{got:?}");
    }
}

#[test]
fn reset_starts_over_from_initial() {
    let mut b = Backoff::new(secs(1.0), secs(60.0), 3.0, 0.0).unwrap();
    b.next_delay();
    b.next_delay();
    b.reset();
    assert_eq!(b.next_delay(), secs(1.0));
}

#[test]
fn saturates_instead_of_overflowing() {
    let mut b = Backoff::new(Duration::MAX / 2, Duration::MAX, 1e300, 0.0).unwrap();
    assert_eq!(b.next_delay(), Duration::MAX / 2);
    assert_eq!(b.next_delay(), Duration::MAX);
    assert_eq!(b.next_delay(), Duration::MAX);
}

#[tokio::test(start_paused = true)]
async fn resets_after_two_minutes_of_health() {
    let mut r = ResetAfterHealthy::for_watch_errors();
    r.backoff.jitter = 0.0;
    let t0 = Instant::now();
    assert_eq!(r.record_failure(t0), secs(0.8));
    assert_eq!(r.record_failure(t0), secs(1.6));
    r.record_success(t0);
    r.record_success(t0 + secs(60.0));
    assert_eq!(r.record_failure(t0 + secs(119.0)), secs(3.2));
    r.record_success(t0 + secs(120.0));
    r.record_success(t0 + secs(200.0));
    assert_eq!(r.record_failure(t0 + secs(240.0)), secs(0.8));
}

#[tokio::test(start_paused = true)]
async fn failure_without_health_keeps_growing() {
    let mut r = ResetAfterHealthy::for_watch_errors();
    r.backoff.jitter = 0.0;
    let t0 = Instant::now();
    r.record_failure(t0);
    // Hours pass, but nothing succeeded in between: no reset.
    assert_eq!(r.record_failure(t0 + secs(7200.0)), secs(1.6));
}

#[test]
fn splitmix_generators_are_decorrelated() {
    let mut a = SplitMix64::from_entropy();
    let mut b = SplitMix64::from_entropy();
    assert_ne!(a.next_u64(), b.next_u64());
    let mut s = SplitMix64::with_seed(0);
    // First output of splitmix64 seeded with 0 (reference value).
    assert_eq!(s.next_u64(), 0xE220_A839_7B1D_CDAF);
}

fn params() -> impl Strategy<Value = (Duration, Duration, f64, f64)> {
    (
        1u64..10_000_000,
        0u64..1_000_000_000,
        1.0f64..10.0,
        0.0f64..=1.0,
    )
        .prop_map(|(initial_us, extra_us, factor, jitter)| {
            let initial = Duration::from_micros(initial_us);
            (
                initial,
                initial + Duration::from_micros(extra_us),
                factor,
                jitter,
            )
        })
}

proptest! {
    #[test]
    fn delays_stay_within_jitter_bounds_and_cap(
        (initial, max, factor, jitter) in params(),
        seed in any::<u64>(),
        steps in 1usize..60,
    ) {
        let mut jittered = Backoff::new(initial, max, factor, jitter).unwrap();
        jittered.rng = SplitMix64::with_seed(seed);
        let mut plain = Backoff::new(initial, max, factor, 0.0).unwrap();
        for _ in 0..steps {
            let base = plain.next_delay();
            let d = jittered.next_delay();
            prop_assert!(d <= base, "{d:?} > base {base:?}");
            prop_assert!(d <= max);
            // mul_f64 rounds to the nanosecond.
            let floor = base.mul_f64(1.0 - jitter).saturating_sub(Duration::from_nanos(1));
            prop_assert!(d >= floor, "{d:?} < floor {floor:?}");
        }
    }

    #[test]
    fn pre_jitter_delays_are_monotone_up_to_the_cap(
        (initial, max, factor, _j) in params(),
        steps in 1usize..80,
    ) {
        let mut b = Backoff::new(initial, max, factor, 0.0).unwrap();
        let mut prev = Duration::ZERO;
        for _ in 0..steps {
            let d = b.next_delay();
            prop_assert!(d >= prev, "{d:?} < {prev:?}");
            prop_assert!(d >= initial && d <= max);
            prev = d;
        }
    }
}

#[test]
fn reconcile_failure_policy_doubles_from_2s_to_300s() {
    let mut b = Backoff::for_reconcile_failures();
    let got: Vec<_> = (0..10).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(got, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(b.base_delay(u32::MAX), FAILURE_MAX);
}

#[test]
fn delay_by_attempt_matches_the_sequence_and_does_not_move_it() {
    let mut seq = Backoff::new(secs(0.5), secs(40.0), 3.0, 0.0).unwrap();
    let mut by_attempt = seq.clone();
    for attempt in 0..8 {
        assert_eq!(
            by_attempt.delay(attempt),
            seq.next_delay(),
            "attempt {attempt}"
        );
    }
    assert_eq!(by_attempt.next_delay(), secs(0.5));
}

#[test]
fn doubling_raises_what_it_would_otherwise_refuse() {
    let b = Backoff::doubling(Duration::ZERO, Duration::ZERO);
    assert_eq!(b.base_delay(0), Duration::from_millis(1));
    assert_eq!(b.base_delay(5), Duration::from_millis(1));
    let b = Backoff::doubling(secs(3.0), secs(1.0));
    assert_eq!(b.base_delay(0), secs(3.0));
    assert_eq!(b.base_delay(9), secs(3.0));
}

#[test]
fn server_retry_after_is_honoured_up_to_the_cap() {
    assert_eq!(retry_after_delay(None), RETRY_AFTER_DEFAULT);
    assert_eq!(retry_after_delay(Some(secs(4.0))), secs(4.0));
    assert_eq!(retry_after_delay(Some(secs(3600.0))), RETRY_AFTER_MAX);
    assert_eq!(retry_after_delay(Some(Duration::ZERO)), Duration::ZERO);
}

#[test]
fn a_fixed_key_always_draws_the_same_fraction() {
    let d = secs(3600.0);
    let a = SplitMix64::fixed_for("team-a").shave(d, 0.05);
    assert_eq!(a, SplitMix64::fixed_for("team-a").shave(d, 0.05));
    assert_ne!(a, SplitMix64::fixed_for("team-b").shave(d, 0.05));
    // Pinned: the seed is FNV-1a of the key, fixed by its definition, so a CR's
    // requeue keeps its place across restarts and releases.
    assert_eq!(
        SplitMix64::fixed_for("").next_u64(),
        SplitMix64::with_seed(0xCBF2_9CE4_8422_2325).next_u64()
    );
}

#[test]
fn jitter_saturates_instead_of_overflowing() {
    let mut rng = SplitMix64::with_seed(7);
    assert!(rng.shave(Duration::MAX, 1.0) <= Duration::MAX);
    assert_eq!(rng.stretch(Duration::MAX, 1.2), Duration::MAX);
    assert_eq!(rng.shave(Duration::ZERO, 0.5), Duration::ZERO);
    assert_eq!(rng.stretch(Duration::ZERO, 1.2), Duration::ZERO);
}

proptest! {
    #[test]
    fn base_delay_saturates_at_the_cap_for_any_attempt(
        (initial, max, factor, _j) in params(),
        attempt in any::<u32>(),
    ) {
        let b = Backoff::new(initial, max, factor, 0.0).unwrap();
        let d = b.base_delay(attempt);
        prop_assert!(d >= initial && d <= max, "{d:?} outside [{initial:?}, {max:?}]");
        prop_assert!(b.base_delay(attempt.saturating_add(1)) >= d);
        if factor >= 1.01 {
            prop_assert_eq!(b.base_delay(u32::MAX), max);
        }
    }

    #[test]
    fn shave_stays_within_its_fraction(
        d_us in 0u64..1_000_000_000_000,
        fraction in 0.0f64..=1.0,
        seed in any::<u64>(),
    ) {
        let d = Duration::from_micros(d_us);
        let got = SplitMix64::with_seed(seed).shave(d, fraction);
        prop_assert!(got <= d);
        let floor = d.mul_f64(1.0 - fraction).saturating_sub(Duration::from_micros(1));
        prop_assert!(got >= floor, "{got:?} < {floor:?}");
    }

    #[test]
    fn stretch_stays_within_its_factor(
        d_us in 0u64..1_000_000_000_000,
        factor in 0.0f64..4.0,
        seed in any::<u64>(),
    ) {
        let d = Duration::from_micros(d_us);
        let got = SplitMix64::with_seed(seed).stretch(d, factor);
        prop_assert!(got >= d);
        let ceiling = d.mul_f64(1.0 + factor) + Duration::from_micros(1);
        prop_assert!(got <= ceiling, "{got:?} > {ceiling:?}");
    }
}
