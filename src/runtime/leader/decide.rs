//! The pure decision: from the Lease as read, when this process last saw it change
//! (monotonic clock) and our identity, whether to create, renew, take over or wait.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::LeaseConfig;
use crate::k8s::lease::{micro_time, LeaseSpec};

// === the pure decision ===

/// The last lease record this process saw, and when it first saw it in this form.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObservedLease {
    pub(crate) spec: LeaseSpec,
    pub(crate) at: Instant,
}

/// Updates what we observed: the clock restarts only when the record changed.
pub(crate) fn observe(
    prev: Option<ObservedLease>,
    current: &LeaseSpec,
    now: Instant,
) -> ObservedLease {
    match prev {
        Some(prev) if prev.spec == *current => prev,
        _ => ObservedLease {
            spec: current.clone(),
            at: now,
        },
    }
}

/// What to do after reading the lease.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decision {
    /// No lease exists: create it, holding it.
    Create(LeaseSpec),
    /// We hold it: PUT this renewed spec.
    Renew(LeaseSpec),
    /// It is free or expired: PUT this spec, taking over.
    Acquire(LeaseSpec),
    /// Someone else holds it and it has not expired (as we measure it).
    Wait { holder: String, expires_at: Instant },
}

/// Decides from the lease as read (`None`: it does not exist), when this process last
/// saw its record change (`observed_at`), the time now (monotonic for expiry, wall for
/// the MicroTime fields) and our identity.
pub(crate) fn decide(
    current: Option<&LeaseSpec>,
    observed_at: Instant,
    now: Instant,
    wall: OffsetDateTime,
    me: &str,
    cfg: &LeaseConfig,
) -> Decision {
    let stamp = micro_time(wall);
    let Some(current) = current else {
        return Decision::Create(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(cfg.lease_duration_seconds()),
            acquire_time: Some(stamp.clone()),
            renew_time: Some(stamp),
            lease_transitions: Some(0),
            extra: Default::default(),
        });
    };
    match current.holder() {
        Some(holder) if holder == me => Decision::Renew(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(cfg.lease_duration_seconds()),
            acquire_time: Some(
                current
                    .acquire_time
                    .clone()
                    .unwrap_or_else(|| stamp.clone()),
            ),
            renew_time: Some(stamp),
            lease_transitions: current.lease_transitions,
            extra: current.extra.clone(),
        }),
        Some(holder) => {
            // The holder's own duration rules, as in client-go; ours if it wrote none.
            let secs = current
                .lease_duration_seconds
                .filter(|s| *s > 0)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(cfg.lease_duration);
            let expires_at = observed_at + secs;
            if now < expires_at {
                Decision::Wait {
                    holder: holder.to_string(),
                    expires_at,
                }
            } else {
                Decision::Acquire(take_over(current, me, stamp, cfg))
            }
        }
        None => Decision::Acquire(take_over(current, me, stamp, cfg)),
    }
}

fn take_over(current: &LeaseSpec, me: &str, stamp: String, cfg: &LeaseConfig) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(cfg.lease_duration_seconds()),
        acquire_time: Some(stamp.clone()),
        renew_time: Some(stamp),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0).saturating_add(1)),
        extra: current.extra.clone(),
    }
}

/// The spec that releases a lease we hold: no holder, a one-second duration (so
/// candidates with older clients also move at once), transitions kept.
pub(crate) fn released(current: &LeaseSpec, wall: OffsetDateTime) -> LeaseSpec {
    let stamp = micro_time(wall);
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(stamp.clone()),
        renew_time: Some(stamp),
        lease_transitions: current.lease_transitions,
        extra: current.extra.clone(),
    }
}

#[cfg(test)]
mod tests;
