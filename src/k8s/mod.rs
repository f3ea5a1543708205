//! The Kubernetes wire: a raw-HTTP client over hyper, in-cluster auth, minimal types and
//! watch-stream framing.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod kind;
pub mod lease;
pub mod params;
pub mod types;
pub mod watch;

pub use client::{Client, WatchStream};
pub use config::ClientConfig;
pub use error::{CaError, ClientConfigError, Error};
pub use params::{ListParams, Patch, Preconditions, WatchParams};

/// The API group of the operator's custom resource.
pub const CRD_GROUP: &str = "ecr.creds.dev";
pub const CRD_VERSION: &str = "v1alpha1";
