//! ecr-creds-refresher keeps Amazon ECR pull secrets fresh in Kubernetes namespaces and
//! attaches them to ServiceAccounts, declared by `ECRPullSecret` custom resources.
//!
//! Layout: `app` wires the parts into the operator, `k8s` owns the Kubernetes wire, `aws`
//! owns credentials, SigV4 and the ECR/STS calls, `runtime` owns the watch/queue/leader
//! machinery, `reconcile` owns the business decisions, `admin` serves probes and metrics.
//! `backoff` is the one retry policy, on the lowest floor so that every module may wait
//! by it (the Kubernetes client too) without importing upwards.
//!
//! The crate exports only a façade: [`Config`] from flags and environment, [`AwsEnv`],
//! [`start`], and the [`Running`] operator it returns, with what a running operator shows
//! of itself. Every module is private to the crate, so the compiler finds dead code and
//! a reader can tell the API from the internals. White-box tests live beside the code
//! they test; `tests/` drives the operator through this façade and over the wire.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub, dead_code)]

pub(crate) mod admin;
pub(crate) mod app;
pub(crate) mod aws;
pub(crate) mod backoff;
pub(crate) mod config;
pub(crate) mod k8s;
pub(crate) mod metrics;
pub(crate) mod reconcile;
pub(crate) mod runtime;

pub use app::{start, ReconcileFailed, Running, StartError, Stopped};
pub use aws::AwsEnv;
pub use config::{Config, ConfigError, LogFormat};
