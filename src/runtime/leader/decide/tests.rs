use super::*;
use crate::k8s::lease::Lease;
use crate::runtime::leader::fixtures::*;

#[test]
fn absent_lease_is_created_holding_it_with_zero_transitions() {
    let t0 = Instant::now();
    let d = decide(None, t0, t0, wall(), ME, &LeaseConfig::default());
    let Decision::Create(spec) = d else {
        panic!("{d:?}")
    };
    assert_eq!(spec.holder(), Some(ME));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(
        spec.acquire_time.as_deref(),
        Some("2026-11-26T21:00:00.123456Z")
    );
    assert_eq!(spec.renew_time, spec.acquire_time);
}

#[test]
fn lease_held_by_another_waits_until_duration_after_we_saw_it_change() {
    let cfg = LeaseConfig::default();
    let seen = Instant::now();
    let current = held_by(OTHER, 3);
    // The holder's renewTime is an hour old by its clock: irrelevant.
    let d = decide(
        Some(&current),
        seen,
        seen + Duration::from_secs(14),
        wall(),
        ME,
        &cfg,
    );
    assert_eq!(
        d,
        Decision::Wait {
            holder: OTHER.into(),
            expires_at: seen + Duration::from_secs(15)
        }
    );
    let d = decide(
        Some(&current),
        seen,
        seen + Duration::from_secs(15),
        wall(),
        ME,
        &cfg,
    );
    let Decision::Acquire(spec) = d else {
        panic!("{d:?}")
    };
    assert_eq!(spec.holder(), Some(ME));
    assert_eq!(
        spec.lease_transitions,
        Some(4),
        "takeover increments leaseTransitions"
    );
    assert_eq!(
        spec.acquire_time.as_deref(),
        Some("2026-11-26T21:00:00.123456Z")
    );
}

#[test]
fn expiry_uses_the_holders_lease_duration_when_it_wrote_one() {
    let cfg = LeaseConfig::default();
    let seen = Instant::now();
    let mut current = held_by(OTHER, 0);
    current.lease_duration_seconds = Some(60);
    let d = decide(
        Some(&current),
        seen,
        seen + Duration::from_secs(30),
        wall(),
        ME,
        &cfg,
    );
    assert!(matches!(d, Decision::Wait { .. }), "{d:?}");
    current.lease_duration_seconds = None;
    let d = decide(
        Some(&current),
        seen,
        seen + Duration::from_secs(15),
        wall(),
        ME,
        &cfg,
    );
    assert!(matches!(d, Decision::Acquire(_)), "{d:?}");
}

#[test]
fn renewal_keeps_acquire_time_and_transitions_and_moves_renew_time() {
    let seen = Instant::now();
    let mut current = held_by(ME, 7);
    current.extra.insert(
        "strategy".into(),
        serde_json::json!("OldestEmulationVersion"),
    );
    let d = decide(
        Some(&current),
        seen,
        seen,
        wall(),
        ME,
        &LeaseConfig::default(),
    );
    let Decision::Renew(spec) = d else {
        panic!("{d:?}")
    };
    assert_eq!(spec.acquire_time, current.acquire_time);
    assert_eq!(spec.lease_transitions, Some(7));
    assert_eq!(
        spec.renew_time.as_deref(),
        Some("2026-11-26T21:00:00.123456Z")
    );
    assert_eq!(
        spec.extra, current.extra,
        "unknown spec fields survive the PUT"
    );
}

#[test]
fn released_lease_is_acquired_at_once_as_a_transition() {
    let seen = Instant::now();
    let free = released(&held_by(OTHER, 2), wall());
    assert_eq!(free.holder(), None);
    assert_eq!(free.lease_transitions, Some(2));
    let d = decide(Some(&free), seen, seen, wall(), ME, &LeaseConfig::default());
    let Decision::Acquire(spec) = d else {
        panic!("{d:?}")
    };
    assert_eq!(spec.lease_transitions, Some(3));
    // An empty string is a free lease too.
    let mut empty = held_by("", 2);
    empty.holder_identity = Some(String::new());
    let d = decide(
        Some(&empty),
        seen,
        seen,
        wall(),
        ME,
        &LeaseConfig::default(),
    );
    assert!(matches!(d, Decision::Acquire(_)), "{d:?}");
}

#[test]
fn observation_clock_restarts_only_when_the_record_changes() {
    let t0 = Instant::now();
    let a = observe(None, &held_by(OTHER, 0), t0);
    assert_eq!(a.at, t0);
    let b = observe(Some(a), &held_by(OTHER, 0), t0 + Duration::from_secs(5));
    assert_eq!(
        b.at, t0,
        "same record: still counting from the first sighting"
    );
    let mut renewed = held_by(OTHER, 0);
    renewed.renew_time = Some("2026-11-26T21:00:01.000000Z".into());
    let c = observe(Some(b), &renewed, t0 + Duration::from_secs(6));
    assert_eq!(c.at, t0 + Duration::from_secs(6));
}

#[test]
fn lease_round_trips_unknown_spec_fields_and_omits_empty_holder() {
    let json = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "42"},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15,
                 "leaseTransitions": 1, "preferredHolder": "y"}
    });
    let lease: Lease = serde_json::from_value(json).unwrap();
    assert_eq!(
        lease.spec.extra.get("preferredHolder"),
        Some(&serde_json::json!("y"))
    );
    let back = serde_json::to_value(&lease).unwrap();
    assert_eq!(back["spec"]["preferredHolder"], "y");
    assert_eq!(back["metadata"]["resourceVersion"], "42");
    let free = serde_json::to_value(released(&lease.spec, wall())).unwrap();
    assert!(free.get("holderIdentity").is_none());
}
