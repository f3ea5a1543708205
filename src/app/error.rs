//! Why the operator could not start: each variant names the step that failed and keeps
//! its cause, so the binary prints one clear line (and exits 2) and a test can tell the
//! steps apart without matching on text.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::aws::error::AwsError;
use crate::k8s::{ClientConfigError, Error as ApiError};

/// Why the operator could not start.
#[derive(Debug)]
pub enum StartError {
    /// The Kubernetes client's settings are unusable (URL, token, CA, TLS).
    ClientConfig(ClientConfigError),
    /// The first list of ECRPullSecrets failed: a wrong CA, a refused token, no CRD or
    /// no RBAC, caught here rather than in a retry loop later.
    FirstList {
        /// The API server asked.
        url: String,
        /// Its answer, or why there was none.
        source: ApiError,
    },
    /// `--aws-credentials-source` names no known source.
    CredentialsSource(AwsError),
    /// The AWS side could not be set up (region, endpoints, credentials).
    Aws(AwsError),
    /// A probe or metrics listener could not be bound.
    Serve {
        /// "health probes" or "metrics".
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding it failed.
        source: crate::admin::AdminError,
    },
    /// `--leader-elect` without a namespace to hold the Lease in.
    LeaderElectionNamespace,
    /// `--once`: the watch caches did not fill in time.
    CachesNotSynced {
        /// How long they were given.
        within: Duration,
    },
}

// === impl StartError ===

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientConfig(e) => write!(f, "cannot configure the Kubernetes client: {e}"),
            Self::FirstList { url, source } => {
                let hint = match source.code() {
                    Some(404) => " (is the CRD installed? kubectl apply -f crd.yaml)",
                    Some(401) => " (the token was refused)",
                    Some(403) => " (RBAC: apply rbac.yaml)",
                    _ => "",
                };
                write!(f, "cannot list ECRPullSecrets at {url}{hint}: {source}")
            }
            Self::CredentialsSource(e) => write!(f, "bad --aws-credentials-source: {e}"),
            Self::Aws(e) => write!(f, "cannot configure AWS: {e}"),
            Self::Serve { what, addr, source } => {
                write!(f, "cannot serve {what} on {addr}: {source}")
            }
            Self::LeaderElectionNamespace => f.write_str(
                "leader election needs a namespace: set --leader-election-namespace or POD_NAMESPACE",
            ),
            Self::CachesNotSynced { within } => {
                write!(f, "--once: the watch caches did not fill within {within:?}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ClientConfig(e) => Some(e),
            Self::FirstList { source, .. } => Some(source),
            Self::CredentialsSource(e) | Self::Aws(e) => Some(e),
            Self::Serve { source, .. } => Some(source),
            Self::LeaderElectionNamespace | Self::CachesNotSynced { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::types::ApiStatus;

    /// Issue 18, item 7: `StartError` was `{ what: String, cause: String }`. Each step
    /// is a variant now, and the line the binary prints is the one it printed before.
    #[test]
    fn item_7_start_errors_name_their_step_and_print_as_before() {
        let not_found = StartError::FirstList {
            url: "https://10.0.0.1".to_string(),
            source: ApiError::Api {
                status: ApiStatus {
                    code: 404,
                    message: "not found".to_string(),
                    ..ApiStatus::default()
                },
            },
        };
        let line = not_found.to_string();
        assert!(
            line.starts_with(
                "cannot list ECRPullSecrets at https://10.0.0.1 (is the CRD installed? kubectl apply -f crd.yaml): "
            ),
            "{line}"
        );
        assert!(std::error::Error::source(&not_found).is_some());
        assert_eq!(
            StartError::LeaderElectionNamespace.to_string(),
            "leader election needs a namespace: set --leader-election-namespace or POD_NAMESPACE"
        );
        assert_eq!(
            StartError::CachesNotSynced {
                within: Duration::from_secs(60)
            }
            .to_string(),
            "--once: the watch caches did not fill within 60s"
        );
        let tls = StartError::ClientConfig(ClientConfigError::NotInCluster);
        assert!(tls
            .to_string()
            .starts_with("cannot configure the Kubernetes client: not running in a cluster"));
    }
}
