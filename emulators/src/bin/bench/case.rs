//! The bench's scenarios: the sizes of a case, the objects it creates (namespaces, CRs,
//! the Secrets they name), and the figures it records. Every other bench module speaks
//! in these terms.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::process::{Cpu, Io};
use super::write_phases::WritePhases;

pub(crate) const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
pub(crate) const EXPIRES: &str = "ecr.creds.dev/expires-at";
pub(crate) const REFRESH: &str = "ecr.creds.dev/refresh-at";
pub(crate) const OWNER: &str = "ecr.creds.dev/owner";

/// One scenario.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Case {
    pub namespaces: usize,
    pub crs: usize,
    /// Watch events trail their writes by this (plus up to half more at random).
    pub lag_ms: u64,
    /// The emulated API server speaks TLS, and with it HTTP/2 (ALPN), as a real one;
    /// else plain HTTP/1.1, as `kubectl proxy`.
    pub tls: bool,
}

// === impl Case ===

impl Case {
    pub(crate) fn label(&self) -> String {
        let size = if self.crs == 1 {
            format!("{} ns", self.namespaces)
        } else {
            format!("{} CRs x {} ns", self.crs, self.namespaces)
        };
        let wire = if self.tls {
            "TLS + HTTP/2"
        } else {
            "plain HTTP/1.1"
        };
        format!("{size}, lag {} ms, {wire}", self.lag_ms)
    }
    pub(crate) fn targets(&self) -> usize {
        self.namespaces * self.crs
    }
    /// Seconds from a token fetch to its refresh: the fake ECR issues tokens living three
    /// times this, the CR refreshes when two thirds remain. Long enough that the initial
    /// sync is over before the refresh starts (about 500 writes a second, plus the lag;
    /// half that with dozens of CRs, whose reconciles each plan over every namespace).
    pub(crate) fn refresh_after(&self) -> u64 {
        let per_second = if self.crs >= 50 { 250 } else { 500 };
        let sync = (self.targets() / per_second) as u64 + 2 * self.lag_ms.div_ceil(1000);
        if self.crs == 1 {
            10.max(2 * sync)
        } else {
            30.max(2 * sync)
        }
    }
    /// How long the initial sync or a refresh may take before the bench gives up.
    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_secs(60 + (self.targets() / 100) as u64 + 10 * self.lag_ms.div_ceil(1000))
    }
    pub(crate) fn token_lifetime(&self) -> Duration {
        Duration::from_secs(3 * self.refresh_after())
    }
    pub(crate) fn before_expiry(&self) -> String {
        format!("{}s", 2 * self.refresh_after())
    }
}

/// Requests of one phase, from the emulator's log.
#[derive(Debug, Default, Serialize, Clone)]
pub(crate) struct Traffic {
    pub total: u64,
    pub reads: u64,
    pub writes: u64,
    pub watches: u64,
    /// Non-2xx answers (conflicts, 422 from failed `test` ops, ...).
    pub errors: u64,
    /// "verb resource[/subresource]" -> count (watches included).
    pub by_verb: BTreeMap<String, u64>,
    /// (reads + writes) / target Secrets.
    pub per_target: f64,
    pub writes_per_target: f64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct CaseResult {
    pub case: String,
    pub namespaces: usize,
    pub crs: usize,
    pub lag_ms: u64,
    pub target_secrets: usize,
    pub start_to_ready_s: f64,
    pub startup_requests: Traffic,
    /// CR created -> every target Secret exists and holds a valid dockerconfigjson.
    pub sync_secrets_s: Option<f64>,
    /// ... and every ServiceAccount lists every Secret and every CR reports Ready.
    pub sync_complete_s: Option<f64>,
    pub initial_sync: Traffic,
    pub initial_sync_ecr_calls: u64,
    pub initial_sync_cpu_s: f64,
    /// CPU of the operator, the emulators and the harness over the initial sync.
    pub initial_sync_cpu: Cpu,
    pub initial_sync_writes: WritePhases,
    /// Reconciles the operator ran during the initial sync (its /metrics).
    pub initial_sync_reconciles: u64,
    /// Seconds from the first Secret holding the new token until every Secret does.
    pub refresh_s: Option<f64>,
    pub refresh: Traffic,
    pub refresh_ecr_calls: u64,
    /// The refresh's API requests that came over HTTP/2.
    pub refresh_http2_requests: u64,
    pub refresh_cpu_s: f64,
    pub refresh_cpu: Cpu,
    /// The operator's system-call traffic over the refresh.
    pub refresh_io: Io,
    /// The refresh's Secret writes and where the operator's time for them went.
    pub refresh_writes: WritePhases,
    pub noop_reconciles_seen: u64,
    pub noop: Traffic,
    pub rss_after_ready_kib: u64,
    pub rss_steady_kib: u64,
    pub rss_peak_kib: u64,
    /// VmRSS after sync split: heap and other anonymous memory vs mapped files (the
    /// binary's own pages, libc).
    pub rss_steady_anon_kib: u64,
    pub rss_steady_file_kib: u64,
    /// Operator threads after sync (tokio workers, blocking pool for DNS lookups...).
    pub threads_steady: u64,
    pub operator_exit: String,
    pub notes: Vec<String>,
}

pub(crate) fn ns_name(i: usize) -> String {
    format!("bench-{i:04}")
}

pub(crate) fn cr_name(c: usize) -> String {
    format!("bench-{c}")
}

pub(crate) fn secret_name(c: usize) -> String {
    format!("ecr-pull-{c}")
}

pub(crate) fn cr(c: usize, case: Case) -> Value {
    json!({
        "apiVersion": "ecr.creds.dev/v1alpha1",
        "kind": "ECRPullSecret",
        "metadata": {"name": cr_name(c)},
        "spec": {
            "secretName": secret_name(c),
            "namespaceSelector": {"matchLabels": {"bench": "yes"}},
            "registries": [REGISTRY],
            "refresh": {"beforeExpiry": case.before_expiry(), "minInterval": "1s"},
        }
    })
}
