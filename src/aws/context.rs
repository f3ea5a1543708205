//! What every AWS call over the network needs, bundled once at startup and handed to each
//! credential source: it sits below `credentials/` and `rolesanywhere/` so that both
//! may take it without importing each other.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use super::endpoint::Endpoints;
use super::http::AwsHttp;

/// What the transport-using sources need: the HTTP client, endpoints, and the region
/// STS is called in.
#[derive(Clone, Debug)]
pub(crate) struct AwsContext {
    pub http: AwsHttp,
    pub endpoints: Endpoints,
    pub region: String,
    /// Told the `notAfter` of each device certificate the operator-wide source loads.
    pub certificate_seen: CertificateObserver,
}

/// A hook for the certificate's `notAfter`: the layer that owns the metrics hands it in,
/// so `aws/` tells what it loaded without importing upwards.
#[derive(Clone, Default)]
pub(crate) struct CertificateObserver(Option<Arc<dyn Fn(OffsetDateTime) + Send + Sync>>);

// === impl CertificateObserver ===

impl CertificateObserver {
    /// Calls `f` with every certificate's `notAfter`.
    pub(crate) fn new(f: impl Fn(OffsetDateTime) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// A certificate valid until `not_after` was loaded.
    pub(crate) fn seen(&self, not_after: OffsetDateTime) {
        if let Some(f) = &self.0 {
            f(not_after);
        }
    }
}

impl fmt::Debug for CertificateObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "CertificateObserver"
        } else {
            "CertificateObserver(none)"
        })
    }
}
