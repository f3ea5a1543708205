//! The soak: the real operator, in-process, keeps 200 namespaces' pull Secrets fresh while
//! both of its peers misbehave without pause. Tokens live seconds instead of 12 hours, so a
//! refresh cycle takes about a second and hundreds of cycles fit in minutes.
//!
//! What it pins:
//! - no Secret ever holds an expired token while AWS answers (every Secret is sampled
//!   straight from emulator state, and its token is looked up among those the fake ECR
//!   issued, with the expiry ECR gave it);
//! - no leaks: RSS, live tokio tasks and open connections to the API server at the end stay
//!   within a small bound of the figures after warm-up;
//! - no storms: ECR calls stay within one per group per refresh cycle, plus the retries
//!   of the faults injected.
//!
//! `SOAK_CYCLES` (default 20) sets the number of refresh cycles; `make soak` runs 1000.
//! `SOAK_NAMESPACES` (default 200) sets the fan-out.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{secret_auths, start_operator, wait_until, Options};
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, Fault};
use emulators::k8s::{EmulatorConfig, FaultConfig, K8sEmulator};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const SECRET_NAME: &str = "ecr-pull";
/// ECR token lifetime. With `beforeExpiry: 19s` and `minInterval: 1s` the operator refreshes
/// about every second (the floor), so a token has 18-19 s of life left when it is replaced.
/// That is sized to the operator's absolute failure backoff (2 s doubling per consecutive
/// failed reconcile): it rides out three failed reconciles in a row (2 + 4 + 8 s), not a
/// missed refresh. (With 8-second tokens, a 1000-cycle run met three reconciles in a row
/// failing on 409s from a lagging Secret cache, waited 2 + 4 + 8 s, and two Secrets expired.)
const TOKEN_LIFETIME: Duration = Duration::from_secs(20);
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Chaos steps (250 ms) between two restarts, and between two compactions: 130 s, longer
/// than the watcher's 2-minute backoff reset.
const HARD_PERIOD_STEPS: u64 = 520;
/// Token groups the CR needs (one region, private ECR).
const GROUPS: u64 = 1;
/// The operator's AWS retry policy makes at most this many attempts per fetch.
const AWS_ATTEMPTS: u64 = 3;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// What the sampler saw.
#[derive(Default)]
struct Observations {
    /// Distinct ECR tokens seen in Secrets: each is one refresh cycle.
    tokens: HashSet<String>,
    violations: Vec<String>,
    samples: u64,
    /// The least life a token had left when sampled, in seconds (negative: expired).
    min_left: f64,
    /// Namespaces seen holding an expired token.
    expired_in: std::collections::BTreeSet<String>,
    /// (cycles seen, RSS in KiB) about once a second: a leak grows with cycles, a cache
    /// filling up levels off.
    rss: Vec<(u64, u64)>,
    /// (cycles seen, live tasks, open API connections), likewise.
    handles: Vec<(u64, usize, usize)>,
}

/// Checks every managed Secret once: its token was issued by the fake ECR, it has not
/// expired, and its expires-at annotation does not claim more life than ECR gave.
fn sample(k8s: &K8sEmulator, aws: &AwsEmulator, obs: &Mutex<Observations>) {
    // Taken before the read: a token expired now is expired in what the read returns.
    let now = now_unix();
    let secrets = k8s.list("secrets", None);
    // Taken after the read, so it holds every token a Secret can hold.
    let issued = aws.issued_ecr_tokens();
    let mut obs = obs.lock().unwrap();
    obs.samples += 1;
    if obs.samples % 10 == 0 {
        let cycles = obs.tokens.len() as u64;
        obs.rss.push((cycles, rss_kib()));
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        obs.handles.push((cycles, tasks, k8s.open_connections()));
    }
    for s in secrets {
        if s["metadata"]["name"] != SECRET_NAME {
            continue;
        }
        let where_ = format!(
            "{}/{}",
            s["metadata"]["namespace"].as_str().unwrap_or("?"),
            SECRET_NAME
        );
        let auths = secret_auths(&s);
        if auths.is_empty() {
            obs.violations
                .push(format!("{where_}: no auth entry in .dockerconfigjson"));
        }
        let annotated = s["metadata"]["annotations"]["ecr.creds.dev/expires-at"]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .map(|t| t.unix_timestamp());
        for auth in auths.values() {
            let Some(&expires) = issued.get(auth) else {
                obs.violations
                    .push(format!("{where_}: holds a token the fake ECR never issued"));
                continue;
            };
            let left = expires as f64 - now;
            if left <= 0.0 {
                obs.expired_in.insert(where_.clone());
                obs.violations.push(format!(
                    "{where_}: token expired {:.2}s ago (expiresAt {expires})",
                    -left
                ));
            }
            if obs.tokens.is_empty() || left < obs.min_left {
                obs.min_left = left;
            }
            match annotated {
                Some(a) if a <= expires => {}
                other => obs.violations.push(format!(
                    "{where_}: expires-at annotation {other:?} is later than the token's expiry {expires}"
                )),
            }
            obs.tokens.insert(auth.clone());
        }
    }
}

/// The figures leaks show in.
#[derive(Debug, Clone, Copy)]
struct Vitals {
    rss_kib: u64,
    tasks: usize,
    connections: usize,
}

/// The quietest figures over about a second: tasks and connections come and go with each
/// reconcile (a write in flight is a task), so the minimum is what stays.
async fn vitals(k8s: &K8sEmulator) -> Vitals {
    let mut v = Vitals {
        rss_kib: 0,
        tasks: usize::MAX,
        connections: usize::MAX,
    };
    for _ in 0..24 {
        v.tasks = v.tasks.min(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        );
        v.connections = v.connections.min(k8s.open_connections());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v.rss_kib = rss_kib();
    v
}

/// Counts of the faults the chaos loop injected.
#[derive(Default)]
struct Chaos {
    k8s_errors: AtomicU64,
    ecr_faults: AtomicU64,
    watch_drops: AtomicU64,
    restarts: AtomicU64,
    compactions: AtomicU64,
}

/// Faults on both sides, without pause, on a fixed rhythm of 250 ms steps:
/// - Kubernetes, all the time: 3% of requests fail (429 or 503 with Retry-After 0 or 1, or
///   500 with Retry-After 0), the mix changing every 2 s; every watch dropped every 3 s;
/// - Kubernetes, once per [`HARD_PERIOD_STEPS`]: a restart (every connection cut, 200 ms
///   of refused connections, state kept), and 9 s later a compaction followed by a watch
///   drop, so every watch resumes into 410 and relists;
/// - ECR, all the time: one throttled or failed call every 2 s (the operator's retry rides
///   it out: AWS still answers).
///
/// Why the hard faults are spaced: the watcher backs off 0.8 s doubling to 30 s and forgets
/// its backoff only after 2 minutes of health (the reference semantics, sized for 12-hour
/// tokens). Tokens here live seconds, so hard faults closer than that would measure the
/// time compression, not the operator: each would leave the caches stale for longer.
async fn chaos(k8s: Arc<K8sEmulator>, aws: Arc<AwsEmulator>, stop: Arc<AtomicBool>, c: Arc<Chaos>) {
    let mixes = [(429, 0), (503, 1), (500, 0), (429, 1), (503, 0)];
    let mut step: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        if step % 8 == 0 {
            c.k8s_errors
                .fetch_add(k8s.faults().injected(), Ordering::SeqCst);
            let (code, retry_after) = mixes[(step / 8) as usize % mixes.len()];
            k8s.faults().set(FaultConfig {
                error_code: Some(code),
                probability: Some(0.03),
                retry_after_secs: Some(retry_after),
                seed: step,
                ..Default::default()
            });
            let fault = if (step / 8) % 2 == 0 {
                Fault::Throttle
            } else {
                Fault::ServerError
            };
            aws.set_fault(fault, Some(1));
            c.ecr_faults.fetch_add(1, Ordering::SeqCst);
        }
        if step % 12 == 5 {
            k8s.drop_watches();
            c.watch_drops.fetch_add(1, Ordering::SeqCst);
        }
        if step % HARD_PERIOD_STEPS == 16 {
            k8s.restart().await.expect("emulator restarts");
            c.restarts.fetch_add(1, Ordering::SeqCst);
        }
        if step % HARD_PERIOD_STEPS == 52 {
            k8s.compact();
            k8s.drop_watches();
            c.compactions.fetch_add(1, Ordering::SeqCst);
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.k8s_errors
        .fetch_add(k8s.faults().injected(), Ordering::SeqCst);
    k8s.faults().clear();
    aws.clear_fault();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_expire_and_nothing_leaks_or_storms_under_continuous_faults() {
    if std::env::var_os("SOAK_LOG").is_some() {
        // Diagnosis: the operator's own log, filtered by RUST_LOG.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let cycles = env_or("SOAK_CYCLES", 20);
    let namespaces = env_or("SOAK_NAMESPACES", 200);
    let mut names: Vec<String> = vec!["default".into(), "kube-system".into()];
    names.extend((0..namespaces).map(|i| format!("soak-{i:03}")));
    let k8s = Arc::new(
        K8sEmulator::start(EmulatorConfig {
            namespaces: names,
            // A bounded log: the emulator shares this process's memory figures.
            request_log_capacity: 1000,
            // Several seconds of this test's writes: a watch resumed after a short outage
            // finds its resourceVersion, as on a real server; compaction forces the 410s.
            // Small, so the emulator's own memory levels off before the baseline.
            history_size: 1_000,
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let aws = Arc::new(
        AwsEmulator::start(AwsEmulatorConfig {
            token_lifetime: TOKEN_LIFETIME,
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let options = Options {
        metrics: true,
        ..Options::default()
    };
    let running = start_operator(&k8s, &aws, &options).await;
    let began = Instant::now();
    k8s.apply(
        "ecrpullsecrets",
        json!({
            "apiVersion": "ecr.creds.dev/v1alpha1",
            "kind": "ECRPullSecret",
            "metadata": {"name": "soak"},
            "spec": {
                "secretName": SECRET_NAME,
                "namespaces": ["soak-*"],
                "refresh": {"beforeExpiry": "19s", "minInterval": "1s"},
            },
        }),
    )
    .unwrap();

    // The sampler runs from the first write to the end.
    let obs = Arc::new(Mutex::new(Observations::default()));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (k8s, aws, obs, stop) = (k8s.clone(), aws.clone(), obs.clone(), stop_sampling.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                sample(&k8s, &aws, &obs);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let secrets_in_place = || {
        k8s.list("secrets", None)
            .iter()
            .filter(|s| s["metadata"]["name"] == SECRET_NAME)
            .count() as u64
    };
    wait_until("every namespace's Secret", Duration::from_secs(60), || {
        secrets_in_place() == namespaces
    })
    .await;
    let seen = |obs: &Mutex<Observations>| obs.lock().unwrap().tokens.len() as u64;
    let warm = seen(&obs) + 2;
    wait_until(
        "two fault-free refresh cycles",
        Duration::from_secs(30),
        || seen(&obs) >= warm,
    )
    .await;
    let start = vitals(&k8s).await;
    let baseline_cycles = seen(&obs);

    let stop_chaos = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Chaos::default());
    let chaos_task = tokio::spawn(chaos(
        k8s.clone(),
        aws.clone(),
        stop_chaos.clone(),
        counts.clone(),
    ));
    let target = seen(&obs) + cycles;
    // A cycle takes about a second; three per cycle is a hang, not slowness.
    wait_until(
        &format!("{cycles} refresh cycles under faults"),
        Duration::from_secs(30 + 3 * cycles),
        || seen(&obs) >= target || !obs.lock().unwrap().violations.is_empty(),
    )
    .await;
    stop_chaos.store(true, Ordering::SeqCst);
    chaos_task.await.unwrap();

    // Settle: two fault-free cycles reconnect what the last restart cut.
    let settled = seen(&obs) + 2;
    wait_until(
        "two refresh cycles after the faults",
        Duration::from_secs(30),
        || seen(&obs) >= settled,
    )
    .await;
    let end = vitals(&k8s).await;
    stop_sampling.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let elapsed = began.elapsed();

    let calls = aws.calls().ecr;
    let issued = aws.issued_ecr_tokens().len() as u64;
    let ecr_faults = counts.ecr_faults.load(Ordering::SeqCst);
    // The sampler has stopped: the observations are final.
    let obs = std::mem::take(&mut *obs.lock().unwrap());
    let observed_cycles = obs.tokens.len() as u64;
    println!(
        "soak: cycles={observed_cycles} namespaces={namespaces} elapsed={:.1}s samples={} min_token_life_left={:.2}s \
         ecr_calls={calls} ecr_tokens_issued={issued} ecr_faults={ecr_faults} k8s_errors={} watch_drops={} \
         compactions={} restarts={} rss_kib={}->{} tasks={}->{} connections={}->{} violations={}",
        elapsed.as_secs_f64(),
        obs.samples,
        obs.min_left,
        counts.k8s_errors.load(Ordering::SeqCst),
        counts.watch_drops.load(Ordering::SeqCst),
        counts.compactions.load(Ordering::SeqCst),
        counts.restarts.load(Ordering::SeqCst),
        start.rss_kib,
        end.rss_kib,
        start.tasks,
        end.tasks,
        start.connections,
        end.connections,
        obs.violations.len(),
    );
    // RSS at each tenth of the run, for the eye: a leak climbs, a filling cache levels off.
    let step = (obs.rss.len() / 10).max(1);
    let series: Vec<String> = obs
        .rss
        .iter()
        .step_by(step)
        .map(|(c, kib)| format!("{c}:{}M", kib / 1024))
        .collect();
    println!("soak: rss by cycle {}", series.join(" "));

    if let Some(first) = obs.violations.first() {
        // Name the stuck Secret's state as the server has it, and what the CR reports.
        let ns = first.split('/').next().unwrap_or_default();
        let server = k8s.get("secrets", Some(ns), SECRET_NAME);
        let cr = k8s.get("ecrpullsecrets", None, "soak");
        eprintln!(
            "server metadata: {:#}\nCR status: {:#}",
            server.map(|s| s["metadata"].clone()).unwrap_or_default(),
            cr.map(|c| c["status"].clone()).unwrap_or_default()
        );
    }
    assert!(
        obs.violations.is_empty(),
        "expired tokens in {:?} (for up to {:.2}s); {} violations, first: {:#?}",
        obs.expired_in,
        -obs.min_left.min(0.0),
        obs.violations.len(),
        &obs.violations[..obs.violations.len().min(10)]
    );
    assert!(
        observed_cycles >= cycles,
        "only {observed_cycles} cycles seen"
    );

    // No storms: at most one successful fetch per group per minInterval, and every call
    // beyond one per observed cycle is a retry of an injected fault (or a token fetched
    // whose writes all failed, which the slack covers).
    let floor_budget = GROUPS * (elapsed.as_secs() / MIN_INTERVAL.as_secs() + 1);
    assert!(
        issued <= floor_budget,
        "{issued} tokens issued in {elapsed:?}: more than one per minInterval"
    );
    let budget = observed_cycles * GROUPS * 11 / 10 + 3 + ecr_faults * AWS_ATTEMPTS;
    assert!(
        calls <= budget,
        "{calls} ECR calls for {observed_cycles} cycles: over the budget of {budget}"
    );

    // No leaks. The client's pool keeps a bounded number of idle connections (and their
    // tasks) after a burst, so the end may sit above the quiet baseline by that much; a
    // leak instead keeps climbing, so the end must not exceed the first half's peak.
    assert!(
        end.tasks <= start.tasks + 48,
        "live tasks grew from {} to {}",
        start.tasks,
        end.tasks
    );
    assert!(
        end.connections <= start.connections + 24,
        "open API connections grew from {} to {}",
        start.connections,
        end.connections
    );
    let halfway = (baseline_cycles + observed_cycles) / 2;
    let first_half = obs
        .handles
        .iter()
        .filter(|(c, ..)| *c >= baseline_cycles && *c < halfway);
    let (peak_tasks, peak_connections) = first_half
        .fold((start.tasks, start.connections), |(t, n), (_, tk, cn)| {
            (t.max(*tk), n.max(*cn))
        });
    assert!(
        end.tasks <= peak_tasks + 8 && end.connections <= peak_connections + 4,
        "tasks {} and connections {} at the end exceed the first half's peaks {peak_tasks} and {peak_connections}",
        end.tasks,
        end.connections
    );
    // Against the baseline, with room for allocator slack; and flat over the second half,
    // where a leak would keep climbing with every cycle while caches have levelled off.
    let rss_allowance = (start.rss_kib / 4).max(16 * 1024);
    assert!(
        end.rss_kib <= start.rss_kib + rss_allowance,
        "RSS grew from {} KiB to {} KiB",
        start.rss_kib,
        end.rss_kib
    );
    if let Some((c, mid)) = obs.rss.iter().find(|(c, _)| *c >= halfway) {
        assert!(
            end.rss_kib <= mid + (mid / 8).max(8 * 1024),
            "RSS kept growing: {mid} KiB at cycle {c}, {} KiB at the end",
            end.rss_kib
        );
    }

    running
        .shutdown(Duration::from_secs(5), std::future::pending())
        .await;
}

/// Resident set size of this process in KiB (Linux `/proc/self/status`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
