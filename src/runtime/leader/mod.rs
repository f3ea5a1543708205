//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.
//!
//! Several replicas run; one holds the Lease and does the writes, the others wait to
//! take over. The rules, and why:
//! - A lease counts as expired `leaseDurationSeconds` after **this process last saw the
//!   record change**, never by comparing the holder's `renewTime` with our clock: the
//!   replicas' clocks may disagree, our monotonic clock cannot.
//! - Every write is a whole-object PUT carrying the `resourceVersion` we read: a 409
//!   means someone else wrote first, so our write did not happen.
//! - The leader re-reads and renews every `retry_period`. If it cannot renew within
//!   `renew_deadline` (less than `lease_duration`) of its last successful renewal, it
//!   stops leading at once: by then the others may be about to take over.
//! - A takeover increments `leaseTransitions`; a renewal keeps `acquireTime`.
//! - On shutdown the leader first announces `false`, then releases by emptying
//!   `holderIdentity`, so a standby takes over without waiting out the lease.
//!
//! The decision is a pure function (`decide.rs`) of the observed record, the monotonic
//! clock and our identity; [`LeaderElector::run`] (`elector.rs`) only does I/O and
//! timing around it.

use std::fmt;
use std::time::Duration;

mod decide;
mod elector;

#[cfg(test)]
mod emulated_tests;

pub(crate) use elector::LeaderElector;

/// Name of the operator's Lease. rbac.yaml grants get/update on exactly this name.
#[cfg(test)]
pub(crate) const DEFAULT_LEASE_NAME: &str = "ecr-creds-refresher";

/// client-go's jitter on acquisition retries: waits are `retry * [1, 2.2)`, which keeps
/// standbys from hitting the API server in lockstep.
pub(crate) const JITTER_FACTOR: f64 = 1.2;

/// Timing of the election. The defaults are client-go's (and controller-runtime's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseConfig {
    /// How long a standby waits, after it last saw the lease change, before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts (with jitter while not leading).
    pub retry_period: Duration,
}

// === impl LeaseConfig ===

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseConfig {
    /// client-go's checks: the leader must give up (renew deadline) before a standby may
    /// take over (lease duration), and must get more than one jittered try before that.
    pub(crate) fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: String| Err(LeaderError::InvalidConfig { reason });
        if self.retry_period.is_zero() {
            return invalid("the retry period must be positive".into());
        }
        if self.lease_duration.as_secs() == 0 || self.lease_duration.subsec_nanos() != 0 {
            return invalid(format!(
                "the lease duration must be a whole number of seconds (leaseDurationSeconds), got {:?}",
                self.lease_duration
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return invalid(format!(
                "the renew deadline ({:?}) must be longer than {JITTER_FACTOR} x the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What went wrong in one election step. Only [`LeaderError::InvalidConfig`] and a failed
/// release are returned from [`LeaderElector::run`]; the others are logged and retried.
#[derive(Debug)]
pub(crate) enum LeaderError {
    /// The timing settings break [`LeaseConfig`]'s rules; nothing was written.
    InvalidConfig {
        /// Which rule, with the values that break it.
        reason: String,
    },
    /// Reading the Lease failed.
    Get {
        /// The API error.
        source: crate::k8s::Error,
    },
    /// Creating the Lease failed (409 AlreadyExists: another replica created it first).
    Create {
        /// The API error.
        source: crate::k8s::Error,
    },
    /// Renewing or taking over failed (409: someone else wrote first).
    Update {
        /// The API error.
        source: crate::k8s::Error,
    },
    /// Emptying the holder on shutdown failed; standbys wait out the lease instead.
    Release {
        /// The API error.
        source: crate::k8s::Error,
    },
    /// The API server did not answer in time.
    Timeout {
        /// What was being done: acquiring or renewing, or releasing.
        phase: &'static str,
        /// The bound that ran out (the time left before the renew deadline).
        after: Duration,
    },
}

// === impl LeaderError ===

impl fmt::Display for LeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaderError::InvalidConfig { reason } => {
                write!(f, "invalid leader election settings: {reason}")
            }
            LeaderError::Get { source } => write!(f, "reading the leader Lease failed: {source}"),
            LeaderError::Create { source } => {
                write!(f, "creating the leader Lease failed: {source}")
            }
            LeaderError::Update { source } => {
                write!(f, "renewing or acquiring the leader Lease failed: {source}")
            }
            LeaderError::Release { source } => write!(
                f,
                "releasing the leader Lease failed (a standby takes over when it expires): {source}"
            ),
            LeaderError::Timeout { phase, after } => {
                write!(
                    f,
                    "{phase} of the leader Lease got no answer within {after:?}"
                )
            }
        }
    }
}

impl std::error::Error for LeaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeaderError::Get { source }
            | LeaderError::Create { source }
            | LeaderError::Update { source }
            | LeaderError::Release { source } => Some(source),
            LeaderError::InvalidConfig { .. } | LeaderError::Timeout { .. } => None,
        }
    }
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_must_let_the_leader_step_down_before_a_takeover() {
        assert!(LeaseConfig::default().validate().is_ok());
        let bad = LeaseConfig {
            renew_deadline: Duration::from_secs(15),
            ..LeaseConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = LeaseConfig {
            retry_period: Duration::from_secs(9),
            ..LeaseConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = LeaseConfig {
            lease_duration: Duration::from_millis(15_500),
            ..LeaseConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
