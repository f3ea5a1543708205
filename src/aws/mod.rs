//! AWS: credentials, SigV4 signing, and the ECR / ECR Public / STS calls, over our own
//! hyper client (no AWS SDK: it would triple the binary and the memory footprint).
//!
//! Files: `env` (settings snapshot), `endpoint` (region -> URL), `sigv4` (signing),
//! `http` (transport, proxies, timeouts), `wire` (error documents, XML, timestamps),
//! `retry` (bounded jittered backoff), `ecr` (GetAuthorizationToken), `sts` (AssumeRole*),
//! `credentials/` (the sources and the caching provider), `token_cache` (shared tokens).

pub mod ecr;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod http;
pub mod retry;
pub mod sigv4;
pub mod sts;
pub mod wire;

pub use endpoint::{Endpoint, Endpoints, Partition};
pub use env::AwsEnv;
pub use error::{AwsError, ErrorKind};
