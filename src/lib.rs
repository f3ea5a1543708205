//! ecr-creds-refresher keeps Amazon ECR pull secrets fresh in Kubernetes namespaces and
//! attaches them to ServiceAccounts, declared by `ECRPullSecret` custom resources.
//!
//! Layout: `app` wires the parts into the operator, `k8s` owns the Kubernetes wire, `aws`
//! owns credentials, SigV4 and the ECR/STS calls, `runtime` owns the watch/queue/leader
//! machinery, `reconcile` owns the business decisions, `admin` serves probes and metrics.
//! `backoff` is the one retry policy, on the lowest floor so that every module may wait
//! by it (the Kubernetes client too) without importing upwards.
//!
//! The binary needs only the façade below: [`Config`] from flags and environment,
//! [`AwsEnv`], [`start`], and the [`Running`] operator it returns. The modules stay
//! public for the white-box suites under `tests/`; inside them, what only the crate uses
//! is `pub(crate)`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod aws;
pub mod backoff;
pub mod config;
pub mod k8s;
pub mod metrics;
pub mod reconcile;
pub mod runtime;

pub use app::{start, ReconcileFailed, Running, StartError, Stopped};
pub use aws::AwsEnv;
pub use config::{Config, ConfigError, LogFormat};
