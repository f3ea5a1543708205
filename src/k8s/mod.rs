//! The Kubernetes wire: a raw-HTTP client over hyper, in-cluster auth, minimal types and
//! watch-stream framing.

pub mod types;
