//! Loopback peers for ecr-creds-refresher's tests, demo and benchmarks. Never linked into
//! the release binary (a dev-dependency only).
//!
//! - `k8s`, `aws`: the Kubernetes API server emulator and the fake AWS endpoints.
//! - `ca` (private; `registry::TestCa` outside): a throwaway CA for the emulators' and the
//!   registry's TLS.
//! - `device_pki`: device certificates for the IAM Roles Anywhere tests.
//! - `registry`: a real container registry (Debian's `docker-registry`) on loopback.
//! - `operator`: the operator binary as a child process (demo, bench, process tests).
//! - `client`: the one HTTP client that talks to the operator's probes and the emulators.
//! - `wait`: the one bounded polling loop.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod aws;
mod ca;
pub mod client;
pub mod device_pki;
mod form;
pub mod k8s;
pub mod operator;
pub mod proxy;
pub mod registry;
pub mod wait;
