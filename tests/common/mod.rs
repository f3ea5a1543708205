//! The one harness of the operator's tests, used from a test file as `mod common;` and
//! `use common::*;`. The peers are the in-repo emulators (`emulators/`): a Kubernetes API
//! server and fake AWS endpoints on loopback.
//!
//! - `env`: the operator in-process, started through `app::start` exactly as the binary
//!   runs it, over emulators of its own ([`Env`]) or the caller's ([`start_operator`]).
//! - `child`: the operator BINARY as a child process (the launcher `demo` and `bench`
//!   use), each replica behind a logging reverse proxy ([`Proxy`]) that tells which
//!   replica sent which request.
//! - `objects`: writing state into the emulator and reading what the operator wrote.
//! - `http`: requests to the emulators and to the operator's probes and metrics.
//! - `wait`: [`wait_until`] and [`wait_for`]. Every wait is bounded and fails with what
//!   it waited for, so a broken rule fails in seconds with a reason instead of hanging.
//!
//! Each test file uses a part of this; the rest is dead code there.
#![allow(dead_code, unused_imports)]

mod child;
mod env;
mod http;
mod logs;
mod objects;
mod wait;

use std::sync::Once;
use std::time::Duration;

pub(crate) use child::*;
pub(crate) use env::*;
pub(crate) use http::*;
pub(crate) use logs::*;
pub(crate) use objects::*;
pub(crate) use wait::*;

/// The fake AWS account; registry hosts are `<ACCOUNT>.dkr.ecr.<region>.amazonaws.com`.
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) use emulators::aws::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
/// The operator's own namespace (POD_NAMESPACE): credentials Secrets there need no grant,
/// and a child process keeps its Lease there.
pub(crate) const OPERATOR_NAMESPACE: &str = "ops";
pub(crate) use emulators::wait::{POLL, WAIT};

/// The ECR registry host of the fake account in `region`.
pub(crate) fn registry(region: &str) -> String {
    format!("{ACCOUNT}.dkr.ecr.{region}.amazonaws.com")
}

/// Logs to the test's captured output; `RUST_LOG=debug cargo test ... -- --nocapture`
/// shows the operator's side of a failure.
pub(crate) fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .try_init();
    });
}
