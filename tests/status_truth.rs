//! Status tells the truth against an unkind API server: with a fifth of all requests
//! answered 500, 503 or 429, watches dropped every 3 seconds and trailing their writes,
//! Ready, once True, stays True for as long as every target namespace holds a valid
//! Secret; a failed redundant write does not count, a transient error is retried before
//! it does, and Events mark real transitions only.

mod common;

use std::time::Duration;

use emulators::k8s::{FaultConfig, WatchLag};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use common::*;

const NAMESPACES: usize = 20;
/// Long enough for several refreshes of the fake 20 s tokens.
const OBSERVE: Duration = Duration::from_secs(25);

/// Whether every target namespace holds our Secret, unexpired, right now.
fn every_secret_valid(env: &Env) -> bool {
    let now = OffsetDateTime::now_utc();
    (0..NAMESPACES).all(|i| {
        env.secret(&format!("truth-{i:02}"), "pull")
            .is_some_and(|s| {
                s["metadata"]["annotations"]["ecr.creds.dev/expires-at"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .is_some_and(|t| t > now)
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_true_stays_true_under_faults_drops_and_lag() {
    let mut env = Env::emulators(Options {
        token_lifetime: Duration::from_secs(20),
        ..Options::default()
    })
    .await;
    for i in 0..NAMESPACES {
        env.namespace(&format!("truth-{i:02}"), &[]).await;
    }
    env.start_operator().await;
    env.cr(
        "truth",
        json!({"secretName": "pull", "namespaces": ["truth-*"], "refresh": {"minInterval": "1s"}}),
    );
    env.wait_synced("truth", NAMESPACES).await;
    // The Ready event is recorded just after the status write that wait_synced saw.
    wait_until("the first Ready event", WAIT, || {
        env.events_for("truth")
            .iter()
            .any(|e| e["reason"] == "TokenFetched")
    })
    .await;
    let events_before = env.events_for("truth").len();

    env.k8s.set_watch_lag(WatchLag {
        fixed_ms: 100,
        random_ms: 300,
        seed: 5,
        ..WatchLag::default()
    });
    env.k8s.faults().set(FaultConfig {
        error_codes: vec![500, 503, 429],
        probability: Some(0.2),
        seed: 17,
        ..FaultConfig::default()
    });
    let started = tokio::time::Instant::now();
    let mut next_drop = started + Duration::from_secs(3);
    let mut observed = 0;
    let mut written_during = 0;
    let writes_at_start = env.writes_of("secrets").len();
    while started.elapsed() < OBSERVE {
        if tokio::time::Instant::now() >= next_drop {
            env.k8s.drop_watches();
            next_drop += Duration::from_secs(3);
        }
        let valid = every_secret_valid(&env);
        let cr = env.get_cr("truth").expect("the CR");
        let ready = ready_condition(&cr).cloned().unwrap_or_default();
        if valid {
            observed += 1;
            assert_eq!(
                ready["status"], "True",
                "Ready flapped while every Secret was valid: {ready}"
            );
        }
        written_during = env.writes_of("secrets").len() - writes_at_start;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.k8s.faults().clear();
    assert!(
        observed > 100,
        "every Secret valid in only {observed} observations"
    );
    assert!(
        written_during >= NAMESPACES,
        "no refresh happened under the faults ({written_during} Secret writes)"
    );
    assert_eq!(
        env.events_for("truth").len(),
        events_before,
        "an Event without a transition: {:?}",
        env.events_for("truth")
    );
    env.shutdown().await;
}
