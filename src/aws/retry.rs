//! Bounded retries for throttling, 5xx and transport errors. Few attempts on purpose: the
//! caller (the reconcile loop) has its own longer backoff; this only rides out blips.

use super::error::AwsError;
use crate::backoff::Backoff;
use std::future::Future;
use std::time::Duration;

/// Each retry waits between half and all of its exponential delay ("equal jitter"), so
/// concurrent callers spread out and none retries at once.
const JITTER: f64 = 0.5;

/// Retry parameters; `attempts` counts the first try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms doubling to 5 s: ECR's 20 TPS quota refills within a second.
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// No retries.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (0-based): a uniform draw in [d/2, d] where
    /// d = min(cap, base * 2^retry), from the operator's one backoff policy. A zero base
    /// or cap retries at once.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        // A base above the cap waits the cap from the first retry on.
        Backoff::new(self.base.min(self.cap), self.cap, 2.0, JITTER)
            .map_or(Duration::ZERO, |mut backoff| backoff.delay(retry))
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or attempts run out.
    pub(crate) async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let retries = self.attempts.max(1) - 1;
        crate::backoff::retry(retries, |n| self.delay(n), AwsError::is_retryable, &mut op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn throttled() -> AwsError {
        AwsError::Service {
            service: "ecr",
            status: 400,
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
            kind: ErrorKind::Throttling,
        }
    }

    #[test]
    fn delays_stay_within_half_to_full_of_the_capped_exponential() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for retry in 0..40 {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << retry.min(16))
                .min(Duration::from_secs(1));
            let d = p.delay(retry);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_until_success() {
        let calls = AtomicU32::new(0);
        let out = RetryPolicy::default()
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(throttled())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = RetryPolicy::default()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(throttled())
            })
            .await;
        assert!(matches!(
            out,
            Err(AwsError::Service {
                kind: ErrorKind::Throttling,
                ..
            })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn access_denied_is_not_retried() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = RetryPolicy::default()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(AwsError::Service {
                    service: "ecr",
                    status: 400,
                    code: "AccessDeniedException".into(),
                    message: "no".into(),
                    kind: ErrorKind::AccessDenied,
                })
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
