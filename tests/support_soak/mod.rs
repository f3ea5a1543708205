//! Helpers shared by the reliability suite (soak and log-scrubbing tests): start the real
//! operator in-process against the emulators, read what it wrote straight from emulator
//! state, and poll with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ecr_creds_refresher::app::{self, Running};
use ecr_creds_refresher::aws::env::AwsEnv;
use ecr_creds_refresher::config::Config;
use emulators::aws::AwsEmulator;
use emulators::k8s::K8sEmulator;

pub const ACCESS_KEY_ID: &str = "AKIASOAKTESTKEY00001";
pub const SECRET_ACCESS_KEY: &str = "soak/Secret+AccessKey/do-not-log-0123456789";

/// Starts the operator on `k8s` and `aws` with static keys from the environment, or with
/// the extra environment `env` (e.g. AWS_CREDENTIALS_SECRET_NAME) and `args`.
pub async fn start_operator(
    k8s: &K8sEmulator,
    aws: &AwsEmulator,
    args: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let url = k8s.url();
    let mut argv = vec![
        "--api-server",
        url.as_str(),
        "--health-probe-bind-address",
        "127.0.0.1:0",
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--min-refresh-interval",
        "1s",
    ];
    argv.extend_from_slice(args);
    let mut pairs: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), "us-east-1".into()),
        // Credentials Secrets in the operator's namespace need no grant.
        ("POD_NAMESPACE".into(), "ops".into()),
    ];
    pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let cfg = Config::parse(argv, |k| {
        pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .expect("config parses");
    let aws_url = aws.url();
    let mut aws_pairs: Vec<(&str, &str)> = vec![
        ("AWS_ENDPOINT_URL", aws_url.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let static_keys = !env.iter().any(|(k, _)| *k == "AWS_CREDENTIALS_SECRET_NAME");
    if static_keys {
        aws_pairs.push(("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID));
        aws_pairs.push(("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY));
    }
    app::start(&cfg, AwsEnv::from_pairs(&aws_pairs))
        .await
        .expect("operator starts")
}

/// Polls `cond` every 25 ms until it holds; panics with `what` after `deadline`.
pub async fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `auth` values (base64 "AWS:password") of a dockerconfigjson Secret, by host.
pub fn secret_auths(secret: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(data) = secret["data"][".dockerconfigjson"].as_str() else {
        return out;
    };
    let Ok(bytes) = STANDARD.decode(data) else {
        return out;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return out;
    };
    if let Some(auths) = json["auths"].as_object() {
        for (host, entry) in auths {
            if let Some(a) = entry["auth"].as_str() {
                out.insert(host.clone(), a.to_string());
            }
        }
    }
    out
}

/// Resident set size of this process in KiB (Linux `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
