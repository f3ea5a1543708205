//! AWS: credentials, SigV4 signing, and the ECR / ECR Public / STS calls, over our own
//! hyper client (no AWS SDK: it would triple the binary and the memory footprint).
//!
//! Files: `env` (settings snapshot), `endpoint` (region -> URL), `sigv4` (signing),
//! `http` (transport, proxies, timeouts), `wire` (error documents, XML, timestamps),
//! `retry` (bounded jittered backoff), `ecr` (GetAuthorizationToken), `sts` (AssumeRole*),
//! `credentials/` (the sources and the caching provider), `fetcher` (one token per group for
//! `reconcile::tokens::TokenCache`, which owns caching), `setup` (wiring from the environment).

pub mod credentials;
pub mod ecr;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod fetcher;
pub mod http;
pub mod retry;
pub mod setup;
pub mod sigv4;
pub mod sts;
pub mod wire;

pub use credentials::{
    AwsContext, CredentialProvider, CredentialSource, SecretCredentials, SourceKind,
};
pub use ecr::{AuthorizationToken, EcrClient};
pub use endpoint::{Endpoint, Endpoints, Partition};
pub use env::AwsEnv;
pub use error::{AwsError, ErrorKind};
pub use fetcher::{fetch_token, AwsTokenFetcher, SecretLookup};
pub use http::{AwsHttp, HttpConfig};
pub use retry::RetryPolicy;
pub use setup::{Aws, AwsSettings};
pub use sts::AssumeRoleParams;
