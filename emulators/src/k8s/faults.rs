//! Fault injection, switchable at runtime: errors with Retry-After on a deterministic share
//! of requests, and added latency. Seeded, so a failing test replays the same faults.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::status::ApiError;

/// What to inject. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    /// 500, 503 or 429 (any code is accepted).
    pub error_code: Option<u16>,
    /// Several codes, taken in turn by successive injected errors (instead of
    /// `error_code`): a server failing in every way at once.
    pub error_codes: Vec<u16>,
    /// Share of matching requests that fail, 0.0..=1.0 (seeded pseudo-random).
    pub probability: Option<f64>,
    /// Fail every Nth matching request (1 = all). Takes precedence over `probability`.
    pub every_nth: Option<u64>,
    /// Retry-After header value in whole seconds.
    pub retry_after_secs: Option<u32>,
    /// Added to every matching request before it is served.
    pub latency_ms: u64,
    /// Added after a matching request is served, before its answer leaves: the client
    /// then acts on a read that another writer may already have made stale.
    pub answer_delay_ms: u64,
    /// Seed of the `probability` draws: one seed, one sequence of failures.
    pub seed: u64,
    /// Only requests with these verbs (get, list, watch, create, update, patch, delete);
    /// empty = all.
    pub verbs: Vec<String>,
    /// Only these resources (plural, e.g. "secrets"); empty = all.
    pub resources: Vec<String>,
    /// Stop failing after this many injected errors.
    pub max_errors: Option<u64>,
    /// The Status message of injected errors instead of the code's usual one (a real
    /// server's messages can be long: admission webhooks and validation echo input).
    pub message: Option<String>,
}

struct FaultState {
    cfg: FaultConfig,
    rng: u64,
    seen: u64,
    injected: u64,
}

/// The live fault switchboard shared by the server and the handle.
pub struct Faults {
    state: Mutex<FaultState>,
}

/// What the server does to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultDecision {
    pub latency: Duration,
    pub answer_delay: Duration,
    pub error: Option<(ApiError, Option<u32>)>,
}

// === impl Faults ===

impl Default for Faults {
    fn default() -> Self {
        Faults {
            state: Mutex::new(FaultState {
                cfg: FaultConfig::default(),
                rng: 1,
                seen: 0,
                injected: 0,
            }),
        }
    }
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the configuration and restarts the sequence from its seed.
    pub fn set(&self, cfg: FaultConfig) {
        let mut st = self.lock();
        st.rng = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        st.seen = 0;
        st.injected = 0;
        st.cfg = cfg;
    }

    /// No faults from now on.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    pub(crate) fn config(&self) -> FaultConfig {
        self.lock().cfg.clone()
    }

    /// How many errors have been injected since the last `set`.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    pub(crate) fn decide(&self, verb: &str, resource: &str) -> FaultDecision {
        let mut st = self.lock();
        let cfg = &st.cfg;
        let applies = (cfg.verbs.is_empty() || cfg.verbs.iter().any(|v| v == verb))
            && (cfg.resources.is_empty() || cfg.resources.iter().any(|r| r == resource));
        if !applies {
            return FaultDecision {
                latency: Duration::ZERO,
                answer_delay: Duration::ZERO,
                error: None,
            };
        }
        let latency = Duration::from_millis(cfg.latency_ms);
        let answer_delay = Duration::from_millis(cfg.answer_delay_ms);
        let code = match cfg.error_codes.len() {
            0 => cfg.error_code,
            n => cfg.error_codes.get(st.injected as usize % n).copied(),
        };
        let Some(code) = code else {
            return FaultDecision {
                latency,
                answer_delay,
                error: None,
            };
        };
        if cfg.max_errors.is_some_and(|m| st.injected >= m) {
            return FaultDecision {
                latency,
                answer_delay,
                error: None,
            };
        }
        st.seen += 1;
        let fail = match (st.cfg.every_nth, st.cfg.probability) {
            (Some(n), _) => n > 0 && st.seen.is_multiple_of(n),
            (None, Some(p)) => {
                // xorshift64*: deterministic for a seed.
                st.rng ^= st.rng >> 12;
                st.rng ^= st.rng << 25;
                st.rng ^= st.rng >> 27;
                let r = st.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
                (r as f64 / (1u64 << 53) as f64) < p
            }
            (None, None) => true,
        };
        if !fail {
            return FaultDecision {
                latency,
                answer_delay,
                error: None,
            };
        }
        st.injected += 1;
        let retry_after = st.cfg.retry_after_secs;
        let mut error = injected_error(code, retry_after);
        if let Some(m) = &st.cfg.message {
            error.message = m.clone();
        }
        FaultDecision {
            latency,
            answer_delay,
            error: Some((error, retry_after)),
        }
    }
}

fn injected_error(code: u16, retry_after: Option<u32>) -> ApiError {
    let mut e = match code {
        429 => ApiError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        ),
        503 => ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        500 => ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: injected fault",
        ),
        c => ApiError::new(c, "InternalError", format!("injected fault {c}")),
    };
    if let Some(s) = retry_after {
        e.details = Some(serde_json::json!({"retryAfterSeconds": s}));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_fails_exactly_every_nth_matching_request() {
        let f = Faults::default();
        f.set(FaultConfig {
            error_code: Some(503),
            every_nth: Some(3),
            verbs: vec!["get".into()],
            ..Default::default()
        });
        let fails: Vec<bool> = (0..6)
            .map(|_| f.decide("get", "secrets").error.is_some())
            .collect();
        assert_eq!(fails, [false, false, true, false, false, true]);
        assert!(f.decide("list", "secrets").error.is_none());
    }

    #[test]
    fn probability_is_reproducible_from_the_seed() {
        let f = Faults::default();
        let cfg = FaultConfig {
            error_code: Some(500),
            probability: Some(0.5),
            seed: 7,
            ..Default::default()
        };
        f.set(cfg.clone());
        let a: Vec<bool> = (0..64)
            .map(|_| f.decide("get", "x").error.is_some())
            .collect();
        f.set(cfg);
        let b: Vec<bool> = (0..64)
            .map(|_| f.decide("get", "x").error.is_some())
            .collect();
        assert_eq!(a, b);
        let n = a.iter().filter(|x| **x).count();
        assert!((16..=48).contains(&n), "{n}");
    }
}
