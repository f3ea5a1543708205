//! Why a reconcile must be retried with backoff. The CR's status already says why to its
//! readers; the variant names the step that failed, for the log and the tests.

use std::fmt;

use crate::k8s::Error as ApiError;
use crate::reconcile::vocab::Reason;

/// A reconcile that must be retried with backoff.
#[derive(Debug)]
pub(crate) enum ReconcileError {
    /// No token could be had (credentials, a grant, AWS): the reason and message the
    /// status reports, since the status and the log must say the same.
    NoToken { reason: Reason, message: String },
    /// Writes to some target namespaces failed in a way worth retrying.
    NamespacesFailed { count: usize },
    /// Deleting what the CR owns did not finish: the finalizer stays until it does.
    CleanupIncomplete,
    /// Adding or removing our finalizer failed.
    Finalizer(ApiError),
    /// The Secrets that share this name are not in the cache yet.
    SharedNotListed { name: String },
    /// The reconcile panicked (a bug; the operator's log has the panic).
    Panicked,
}

// === impl ReconcileError ===

impl ReconcileError {
    /// The reason a status or a metric files this failure under.
    pub(crate) fn reason(&self) -> Reason {
        match self {
            Self::NoToken { reason, .. } => *reason,
            Self::NamespacesFailed { .. } => Reason::NamespaceErrors,
            Self::CleanupIncomplete | Self::Finalizer(_) | Self::SharedNotListed { .. } => {
                Reason::WriteFailed
            }
            Self::Panicked => Reason::ReconcilePanicked,
        }
    }
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.reason())?;
        match self {
            Self::NoToken { message, .. } => f.write_str(message),
            Self::NamespacesFailed { count } => write!(f, "{count} namespaces failed"),
            Self::CleanupIncomplete => f.write_str("cleanup incomplete; retrying"),
            Self::Finalizer(e) => write!(f, "updating the finalizer: {e}"),
            Self::SharedNotListed { name } => write!(f, "Secrets named {name} not listed yet"),
            Self::Panicked => f.write_str("the reconcile panicked"),
        }
    }
}

impl std::error::Error for ReconcileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Finalizer(e) => Some(e),
            _ => None,
        }
    }
}
