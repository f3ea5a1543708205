//! The Kubernetes wire: a raw-HTTP client over hyper, in-cluster auth, minimal types and
//! watch-stream framing.

pub mod auth;
pub mod client;
pub mod error;
pub mod kind;
pub mod types;
pub mod watch;

pub use client::{
    Client, ClientConfig, ListParams, Patch, Preconditions, WatchParams, WatchStream,
};
pub use error::{ConfigError, Error};

/// The API group of the operator's custom resource.
pub const CRD_GROUP: &str = "ecr.creds.dev";
pub const CRD_VERSION: &str = "v1alpha1";
