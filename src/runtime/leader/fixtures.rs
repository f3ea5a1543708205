//! Identities and lease records shared by the decision's and the elector's tests.

use time::OffsetDateTime;

use crate::k8s::lease::LeaseSpec;

pub(super) const ME: &str = "pod-a_1";
pub(super) const OTHER: &str = "pod-b_2";

pub(super) fn wall() -> OffsetDateTime {
    time::macros::datetime!(2026-11-26 21:00:00.123456789 UTC)
}

pub(super) fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_string()),
        lease_duration_seconds: Some(15),
        acquire_time: Some("2026-11-26T20:00:00.000001Z".into()),
        renew_time: Some("2026-11-26T20:59:59.000001Z".into()),
        lease_transitions: Some(transitions),
        extra: Default::default(),
    }
}
