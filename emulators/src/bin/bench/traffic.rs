//! The operator's API traffic, from the emulator's request log and the operator's own
//! /metrics: requests per phase, when traffic has settled, how many reconciles ran.

use std::time::{Duration, Instant};

use emulators::client;
use emulators::k8s::K8sEmulator;
use emulators::operator::OperatorChild;

use serde::Serialize;

use super::case::{Case, Traffic};

/// Traffic is over when the request log has not grown for this long.
const QUIET: Duration = Duration::from_millis(600);

/// Waits until the request log stops growing (bounded).
pub async fn settle(k8s: &K8sEmulator) {
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

pub fn traffic(k8s: &K8sEmulator, case: Case) -> Traffic {
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
pub async fn reconcile_count(op: &OperatorChild) -> u64 {
    metrics_text(op)
        .await
        .lines()
        .filter(|l| l.starts_with("ecr_creds_refresher_reconcile_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The operator's Secret creates and updates and the time they spent per phase, from its
/// /metrics (`secret_writes_total`, `secret_write_seconds_total{phase}`).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct WritePhases {
    pub writes: u64,
    /// Serialising the request body.
    pub build_s: f64,
    /// From the request out until the answer is read (wall time: mostly waiting for the
    /// API server, not CPU).
    pub send_s: f64,
    /// Parsing the answer.
    pub parse_s: f64,
    /// Projecting it into the cache, ahead of the watch.
    pub cache_s: f64,
}

// === impl WritePhases ===

impl WritePhases {
    pub async fn read(op: &OperatorChild) -> WritePhases {
        let text = metrics_text(op).await;
        let mut w = WritePhases::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            match series {
                "ecr_creds_refresher_secret_writes_total{op=\"create\"}"
                | "ecr_creds_refresher_secret_writes_total{op=\"update\"}" => w.writes += v as u64,
                "ecr_creds_refresher_secret_write_seconds_total{phase=\"build\"}" => w.build_s = v,
                "ecr_creds_refresher_secret_write_seconds_total{phase=\"send\"}" => w.send_s = v,
                "ecr_creds_refresher_secret_write_seconds_total{phase=\"parse\"}" => w.parse_s = v,
                "ecr_creds_refresher_secret_write_seconds_total{phase=\"cache\"}" => w.cache_s = v,
                _ => {}
            }
        }
        w
    }

    pub fn since(self, earlier: WritePhases) -> WritePhases {
        WritePhases {
            writes: self.writes.saturating_sub(earlier.writes),
            build_s: self.build_s - earlier.build_s,
            send_s: self.send_s - earlier.send_s,
            parse_s: self.parse_s - earlier.parse_s,
            cache_s: self.cache_s - earlier.cache_s,
        }
    }

    /// Microseconds per write of `seconds`.
    pub fn per_write_us(&self, seconds: f64) -> f64 {
        seconds * 1e6 / self.writes.max(1) as f64
    }
}

async fn metrics_text(op: &OperatorChild) -> String {
    let Some(addr) = op.metrics_addr else {
        return String::new();
    };
    match client::get(addr, "/metrics").await {
        Ok(answer) if answer.status == 200 => answer.text(),
        _ => String::new(),
    }
}
