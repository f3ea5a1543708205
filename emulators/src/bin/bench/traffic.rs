//! The operator's API traffic, from the emulator's request log and the operator's own
//! /metrics: requests per phase, when traffic has settled, how many reconciles ran.

use std::time::{Duration, Instant};

use emulators::k8s::K8sEmulator;
use emulators::operator::OperatorChild;

use super::case::{Case, Traffic};
use super::write_phases::metrics_text;

/// Traffic is over when the request log has not grown for this long.
const QUIET: Duration = Duration::from_millis(600);

/// Waits until the request log stops growing (bounded), then until the watch's echoes of
/// the last writes have arrived (they trail them by up to the lag and a half): the
/// operator's CPU, traffic and memory for them belong to the phase that wrote.
pub(crate) async fn settle(k8s: &K8sEmulator, case: Case) {
    settle_requests(k8s).await;
    tokio::time::sleep(Duration::from_millis(case.lag_ms * 3 / 2 + 200)).await;
}

/// Waits until the request log stops growing (bounded).
async fn settle_requests(k8s: &K8sEmulator) {
    let count = || k8s.request_counts().values().sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return;
        }
    }
}

pub(crate) fn traffic(k8s: &K8sEmulator, case: Case) -> Traffic {
    let mut t = Traffic::default();
    for rec in k8s.requests() {
        if rec.verb.is_empty() {
            continue;
        }
        t.total += 1;
        if !(200..300).contains(&rec.code) {
            t.errors += 1;
        }
        let resource = if rec.subresource.is_empty() {
            rec.resource.clone()
        } else {
            format!("{}/{}", rec.resource, rec.subresource)
        };
        let mut key = format!("{} {resource}", rec.verb);
        if !(200..300).contains(&rec.code) {
            key.push_str(&format!(" ({})", rec.code));
        }
        *t.by_verb.entry(key).or_insert(0) += 1;
        match rec.verb.as_str() {
            "watch" => t.watches += 1,
            "get" | "list" => t.reads += 1,
            _ => t.writes += 1,
        }
    }
    let n = case.targets().max(1) as f64;
    t.per_target = (t.reads + t.writes) as f64 / n;
    t.writes_per_target = t.writes as f64 / n;
    t
}

/// Sum of the reconcile-duration histogram counts on the operator's /metrics.
pub(crate) async fn reconcile_count(op: &OperatorChild) -> u64 {
    metrics_text(op)
        .await
        .lines()
        .filter(|l| l.starts_with("ecr_creds_refresher_reconcile_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
