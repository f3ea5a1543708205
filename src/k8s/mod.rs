//! The Kubernetes wire: a raw-HTTP client over hyper, in-cluster auth, minimal types and
//! watch-stream framing.

pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod kind;
pub(crate) mod lease;
pub(crate) mod params;
pub(crate) mod resource_version;
pub(crate) mod types;
pub(crate) mod watch;

#[cfg(test)]
mod props_watch;

pub(crate) use client::{Client, WatchStream};
pub(crate) use config::ClientConfig;
pub(crate) use error::{ClientConfigError, Error};
pub(crate) use params::{ListParams, Patch, Preconditions, WatchParams};

/// The API group of the operator's custom resource.
pub(crate) const CRD_GROUP: &str = "ecr.creds.dev";
pub(crate) const CRD_VERSION: &str = "v1alpha1";
