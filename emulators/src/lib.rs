//! Loopback peers for ecr-creds-refresher's tests, demo and benchmarks. Never linked into
//! the release binary (a dev-dependency only).
#![forbid(unsafe_code)]

pub mod aws;
pub mod k8s;
