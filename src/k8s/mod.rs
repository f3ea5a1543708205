//! The Kubernetes wire: a raw-HTTP client over hyper, in-cluster auth, minimal types and
//! watch-stream framing.

pub mod auth;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod error;
pub mod kind;
pub(crate) mod lease;
pub(crate) mod params;
pub mod types;
pub mod watch;

#[cfg(test)]
mod props_watch;

pub use client::{Client, WatchStream};
pub use config::ClientConfig;
pub use error::{CaError, ClientConfigError, Error};
pub use params::{ListParams, Patch, Preconditions, WatchParams};

/// The API group of the operator's custom resource.
pub(crate) const CRD_GROUP: &str = "ecr.creds.dev";
pub(crate) const CRD_VERSION: &str = "v1alpha1";
