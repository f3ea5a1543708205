//! What every AWS call over the network needs, bundled once at startup and handed to each
//! credential source: it sits below `credentials/` and `rolesanywhere/` so that both
//! may take it without importing each other.

use super::endpoint::Endpoints;
use super::http::AwsHttp;

/// What the transport-using sources need: the HTTP client, endpoints, and the region
/// STS is called in.
#[derive(Clone, Debug)]
pub struct AwsContext {
    pub http: AwsHttp,
    pub endpoints: Endpoints,
    pub region: String,
}
