//! AWS: credentials, SigV4 signing, and the ECR / ECR Public / STS calls, over our own
//! hyper client (no AWS SDK: it would triple the binary and the memory footprint).
//!
//! Files: `env` (settings snapshot), `endpoint` (region -> URL), `sigv4` (signing),
//! `http` (transport, proxies, timeouts), `wire` (error documents, XML, timestamps),
//! `retry` (bounded jittered backoff), `registry` (the registries' `/v2/` check), `ecr` (GetAuthorizationToken), `sts` (AssumeRole*),
//! `context` (what every networked source is handed), `credentials/` (the sources and the
//! caching provider), `x509/` (certificates and keys, read and matched), `rolesanywhere/`
//! (the X.509 SigV4 variant and CreateSession), `token` (one token with a
//! provider, reloading expired credentials), `setup` (wiring from the environment),
//! `watched_secret` (a Secret's latest version, as a watch publishes it).
//! Nothing here knows of ECRPullSecrets: `app::tokens` adapts it to the reconciler.

pub(crate) mod context;
pub(crate) mod credentials;
pub(crate) mod ecr;
pub(crate) mod endpoint;
pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod registry;
pub(crate) mod retry;
pub(crate) mod rolesanywhere;
pub(crate) mod setup;
pub(crate) mod sigv4;
pub(crate) mod sts;
pub(crate) mod token;
pub(crate) mod watched_secret;
pub(crate) mod wire;
pub(crate) mod x509;

#[cfg(test)]
mod props;

pub use env::AwsEnv;
