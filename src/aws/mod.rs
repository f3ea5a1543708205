//! AWS: credentials, SigV4 signing, and the ECR / ECR Public / STS calls, over our own
//! hyper client (no AWS SDK: it would triple the binary and the memory footprint).
//!
//! Files: `env` (settings snapshot), `endpoint` (region -> URL), `sigv4` (signing),
//! `http` (transport, proxies, timeouts), `wire` (error documents, XML, timestamps),
//! `retry` (bounded jittered backoff), `registry` (the registries' `/v2/` check), `ecr` (GetAuthorizationToken), `sts` (AssumeRole*),
//! `context` (what every networked source is handed), `credentials/` (the sources and the
//! caching provider), `x509/` (certificates and keys, read and matched), `rolesanywhere/`
//! (the X.509 SigV4 variant and CreateSession), `token` (one token with a
//! provider, reloading expired credentials), `setup` (wiring from the environment).
//! Nothing here knows of ECRPullSecrets: `app::tokens` adapts it to the reconciler.

pub mod context;
pub mod credentials;
pub mod ecr;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod http;
pub mod registry;
pub mod retry;
pub mod rolesanywhere;
pub mod setup;
pub mod sigv4;
pub mod sts;
pub mod token;
pub mod wire;
pub mod x509;

#[cfg(test)]
mod props;

pub use context::AwsContext;
pub use credentials::{CredentialProvider, CredentialSource, SecretCredentials, SourceKind};
pub use ecr::{AuthorizationToken, EcrClient};
pub use endpoint::{Endpoint, Endpoints, Partition};
pub use env::AwsEnv;
pub use error::{AwsError, ErrorKind};
pub use http::{AwsHttp, HttpConfig};
pub use registry::{CheckError, RegistryClient};
pub use retry::RetryPolicy;
pub use setup::{Aws, AwsSettings};
pub use sts::AssumeRoleParams;
pub use token::fetch_token;
