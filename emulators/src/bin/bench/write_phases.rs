//! Where the operator's Secret writes spent their time, read from its /metrics: the
//! per-phase counters the bench prints as microseconds per write.

use emulators::client;
use emulators::operator::OperatorChild;
use serde::Serialize;

/// The operator's Secret creates and updates and the time they spent per phase, from its
/// /metrics (`secret_writes_total`, `secret_write_seconds_total{phase}`).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct WritePhases {
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
    pub(crate) async fn read(op: &OperatorChild) -> WritePhases {
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

    pub(crate) fn since(self, earlier: WritePhases) -> WritePhases {
        WritePhases {
            writes: self.writes.saturating_sub(earlier.writes),
            build_s: self.build_s - earlier.build_s,
            send_s: self.send_s - earlier.send_s,
            parse_s: self.parse_s - earlier.parse_s,
            cache_s: self.cache_s - earlier.cache_s,
        }
    }

    /// Microseconds per write of `seconds`.
    pub(crate) fn per_write_us(&self, seconds: f64) -> f64 {
        seconds * 1e6 / self.writes.max(1) as f64
    }
}

/// The operator's /metrics page, or nothing when it has none or does not answer.
pub(crate) async fn metrics_text(op: &OperatorChild) -> String {
    let Some(addr) = op.metrics_addr else {
        return String::new();
    };
    match client::get(addr, "/metrics").await {
        Ok(answer) if answer.status == 200 => answer.text(),
        _ => String::new(),
    }
}
