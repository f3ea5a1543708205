//! The memory figure behind deploy/deployment.yaml's resources: the operator binary
//! serving 10 ECRPullSecrets over 1000 namespaces (1000 pull Secrets, 1000 ServiceAccount
//! patches, every cache full), its peak resident set (VmHWM) read from /proc.
//!
//! It fails if the peak exceeds the shipped memory REQUEST (the limit adds headroom on
//! top). `cargo test` runs the debug build, larger than the release image's binary, so a
//! pass here is conservative; `ECR_CREDS_REFRESHER_BIN=target/release/ecr-creds-refresher
//! cargo test --test production_memory -- --nocapture` measures the shipped build.

mod support_prod;

use std::time::{Duration, Instant};

use serde_json::json;
use support_prod::*;

const CRS: usize = 10;
const NAMESPACES_PER_CR: usize = 100;

/// `VmHWM` / `VmRSS` of a process, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU time the process used so far (user + system), from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th
    // fields overall, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// `resources.<section>.memory` of deploy/deployment.yaml, in MiB.
fn shipped_memory_mib(section: &str) -> u64 {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/deployment.yaml"
    ))
    .unwrap();
    let mut in_section = false;
    for line in yaml.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if line.ends_with(':') {
            in_section = line == format!("{section}:");
            continue;
        }
        if let (true, Some(v)) = (in_section, line.strip_prefix("memory:")) {
            return v.trim().trim_end_matches("Mi").parse().unwrap();
        }
    }
    panic!("no resources.{section}.memory in deploy/deployment.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_at_1000_namespaces_and_10_crs_fits_the_shipped_request() {
    let (k8s, aws) = emulators(&[]).await;
    for c in 0..CRS {
        for n in 0..NAMESPACES_PER_CR {
            apply_namespace(&k8s, &format!("t{c}-ns{n}"));
        }
        apply_cr(
            &k8s,
            &format!("cr-{c}"),
            json!({"secretName": format!("pull-{c}"), "namespaces": [format!("t{c}-*")],
                   "registries": [registry()]}),
        );
    }
    let mut s = Spawn::new("mem", k8s.url(), &aws);
    let bin = std::env::var("ECR_CREDS_REFRESHER_BIN").ok();
    let started = Instant::now();
    s.extra_env.push(("RUST_LOG".into(), "warn".into()));
    let op = Instance::spawn_of(bin.as_deref().unwrap_or(BINARY), s);

    wait_until(
        "every CR Ready over all its namespaces",
        Duration::from_secs(60),
        || {
            (0..CRS)
                .all(|c| {
                    k8s.get("ecrpullsecrets", None, &format!("cr-{c}"))
                        .is_some_and(|cr| {
                            is_ready(&cr)
                                && cr["status"]["syncedNamespaces"] == NAMESPACES_PER_CR as u64
                        })
                })
                .then_some(())
        },
    )
    .await;
    let converged = started.elapsed();
    // Let the in-flight status writes and watch events settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hwm = proc_kib(op.pid(), "VmHWM:");
    let rss = proc_kib(op.pid(), "VmRSS:");
    let cpu = cpu_seconds(op.pid());
    // CPU after convergence: first the trailing watch events of its own writes, then
    // rest (watch bookmarks; no --leader-elect here, nothing to write).
    let window = Duration::from_secs(3);
    let millicores = |from: f64| (cpu_seconds(op.pid()) - from) / window.as_secs_f64() * 1000.0;
    tokio::time::sleep(window).await;
    let trailing_millicores = millicores(cpu);
    let rest_from = cpu_seconds(op.pid());
    tokio::time::sleep(window).await;
    let idle_millicores = millicores(rest_from);
    let request = shipped_memory_mib("requests");
    let limit = shipped_memory_mib("limits");
    println!(
        "{} ({}): converged in {converged:?} using {cpu:.2} s of CPU, then {trailing_millicores:.0}m for 3 s, {idle_millicores:.0}m at rest; VmHWM {:.1} MiB, VmRSS {:.1} MiB; shipped request {request} Mi, limit {limit} Mi",
        bin.as_deref().unwrap_or(BINARY),
        if bin.is_some() { "given" } else { "test profile" },
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    assert!(
        hwm <= request * 1024,
        "peak {hwm} KiB exceeds the shipped request {request} Mi"
    );
    assert!(request < limit, "the limit leaves no headroom");
}
