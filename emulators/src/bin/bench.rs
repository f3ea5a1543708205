//! `make bench`: speed, API traffic, AWS calls, memory and CPU of the release operator
//! binary, run as a child process against the in-repo emulators (in this process).
//!
//! Cases: one ECRPullSecret over 10, 100, 1000 and 10000 namespaces, and 10 ECRPullSecrets
//! over the same 1000 namespaces, each against watches that deliver at once and that
//! trail their writes by 200 ms and by 2 s (plus up to half more at random), as a busy
//! API server's do: a request count that only holds on an instant echo is no figure.
//! Each case gets a fresh emulator and a fresh operator, then:
//! start -> ready (`/readyz`), CR -> every Secret valid (emulator state polled directly),
//! the requests of the initial sync (emulator request log), one token refresh (the fake
//! ECR issues 30 s tokens, the CR refreshes 20 s before expiry), a no-op reconcile, and
//! RSS / CPU from /proc. Figures are printed next to the targets and the Python reference
//! operator's; nothing is asserted (a benchmark, not a test).
//!
//! Usage: bench --operator <release binary> [--out bench/latest.json] [--table bench/README-table.md]
//!              [--cases 10,100,1000,10000,10x1000] [--lags 0,200,2000]
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use emulators::client;
use emulators::k8s::{EmulatorConfig, K8sEmulator, WatchLag};
use emulators::operator::{Launch, OperatorChild};
use emulators::wait::poll;
use serde::Serialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const EXPIRES: &str = "ecr.creds.dev/expires-at";
const REFRESH: &str = "ecr.creds.dev/refresh-at";
const OWNER: &str = "ecr.creds.dev/owner";
/// Traffic is over when the request log has not grown for this long.
const QUIET: Duration = Duration::from_millis(600);
const POLL: Duration = Duration::from_millis(20);

/// One scenario.
#[derive(Clone, Copy, Debug)]
struct Case {
    namespaces: usize,
    crs: usize,
    /// Watch events trail their writes by this (plus up to half more at random).
    lag_ms: u64,
}

impl Case {
    fn label(&self) -> String {
        let size = if self.crs == 1 {
            format!("{} ns", self.namespaces)
        } else {
            format!("{} CRs x {} ns", self.crs, self.namespaces)
        };
        format!("{size}, lag {} ms", self.lag_ms)
    }
    fn targets(&self) -> usize {
        self.namespaces * self.crs
    }
    /// Seconds from a token fetch to its refresh: the fake ECR issues tokens living three
    /// times this, the CR refreshes when two thirds remain. Long enough that the initial
    /// sync is over before the refresh starts (about 1000 writes a second, plus the lag).
    fn refresh_after(&self) -> u64 {
        let sync = (self.targets() / 500) as u64 + 2 * self.lag_ms.div_ceil(1000);
        if self.crs == 1 {
            10.max(2 * sync)
        } else {
            30.max(2 * sync)
        }
    }
    /// How long the initial sync or a refresh may take before the bench gives up.
    fn deadline(&self) -> Duration {
        Duration::from_secs(60 + (self.targets() / 100) as u64 + 10 * self.lag_ms.div_ceil(1000))
    }
    fn token_lifetime(&self) -> Duration {
        Duration::from_secs(3 * self.refresh_after())
    }
    fn before_expiry(&self) -> String {
        format!("{}s", 2 * self.refresh_after())
    }
}

/// Requests of one phase, from the emulator's log.
#[derive(Debug, Default, Serialize, Clone)]
struct Traffic {
    total: u64,
    reads: u64,
    writes: u64,
    watches: u64,
    /// Non-2xx answers (conflicts, 422 from failed `test` ops, ...).
    errors: u64,
    /// "verb resource[/subresource]" -> count (watches included).
    by_verb: BTreeMap<String, u64>,
    /// (reads + writes) / target Secrets.
    per_target: f64,
    writes_per_target: f64,
}

#[derive(Debug, Default, Serialize)]
struct CaseResult {
    case: String,
    namespaces: usize,
    crs: usize,
    lag_ms: u64,
    target_secrets: usize,
    start_to_ready_s: f64,
    startup_requests: Traffic,
    /// CR created -> every target Secret exists and holds a valid dockerconfigjson.
    sync_secrets_s: Option<f64>,
    /// ... and every ServiceAccount lists every Secret and every CR reports Ready.
    sync_complete_s: Option<f64>,
    initial_sync: Traffic,
    initial_sync_ecr_calls: u64,
    initial_sync_cpu_s: f64,
    /// Reconciles the operator ran during the initial sync (its /metrics).
    initial_sync_reconciles: u64,
    /// Seconds from the first Secret holding the new token until every Secret does.
    refresh_s: Option<f64>,
    refresh: Traffic,
    refresh_ecr_calls: u64,
    refresh_cpu_s: f64,
    noop_reconciles_seen: u64,
    noop: Traffic,
    rss_after_ready_kib: u64,
    rss_steady_kib: u64,
    rss_peak_kib: u64,
    /// VmRSS after sync split: heap and other anonymous memory vs mapped files (the
    /// binary's own pages, libc).
    rss_steady_anon_kib: u64,
    rss_steady_file_kib: u64,
    /// Operator threads after sync (tokio workers, blocking pool for DNS lookups...).
    threads_steady: u64,
    operator_exit: String,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Machine {
    date: String,
    git_commit: String,
    git_dirty: bool,
    nproc: usize,
    cpu_model: String,
    mem_total_kib: u64,
    load_average_at_start: String,
    rustc: String,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    operator_binary: String,
    binary_bytes: u64,
    binary_mib: f64,
    settings: Value,
    targets: Value,
    python_reference: Value,
    cases: Vec<CaseResult>,
}

struct Args {
    operator: PathBuf,
    out: PathBuf,
    table: PathBuf,
    cases: Vec<Case>,
    /// `--operator-env K=V`, repeatable: extra environment for the operator.
    operator_env: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut operator = None;
    let mut out = PathBuf::from("bench/latest.json");
    let mut table = PathBuf::from("bench/README-table.md");
    let mut sizes = vec![(10, 1), (100, 1), (1000, 1), (10_000, 1), (1000, 10)];
    let mut lags = vec![0, 200, 2000];
    let mut operator_env = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--operator" => operator = Some(PathBuf::from(value()?)),
            "--out" => out = PathBuf::from(value()?),
            "--table" => table = PathBuf::from(value()?),
            "--operator-env" => {
                let kv = value()?;
                let (k, v) = kv.split_once('=').ok_or("--operator-env takes KEY=VALUE")?;
                operator_env.push((k.to_string(), v.to_string()));
            }
            "--cases" => {
                sizes = value()?
                    .split(',')
                    .map(|c| {
                        let (crs, ns) = c.split_once('x').unwrap_or(("1", c));
                        Some((ns.parse().ok()?, crs.parse().ok()?))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--cases: e.g. 10,100,1000,10000,10x1000")?
            }
            "--lags" => {
                lags = value()?
                    .split(',')
                    .map(|l| l.trim().parse().ok())
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--lags: milliseconds, e.g. 0,200,2000")?
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let cases = lags
        .iter()
        .flat_map(|&lag_ms| {
            sizes.iter().map(move |&(namespaces, crs)| Case {
                namespaces,
                crs,
                lag_ms,
            })
        })
        .collect();
    let operator = operator.ok_or("--operator <path to the release binary> is required")?;
    if !operator.is_file() {
        return Err(format!(
            "no operator binary at {} (make release builds it)",
            operator.display()
        ));
    }
    Ok(Args {
        operator,
        out,
        table,
        cases,
        operator_env,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            eprintln!("usage: bench --operator <release binary> [--out FILE] [--table FILE] [--cases 10,100,1000,10000,10x1000] [--lags 0,200,2000]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C drops the running case: its operator child is killed on drop.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let binary_bytes = std::fs::metadata(&args.operator)
        .map_err(|e| format!("{}: {e}", args.operator.display()))?
        .len();
    let machine = machine();
    println!(
        "bench: {} on {} x {} ({} MiB RAM, load {}), commit {}{}",
        args.operator.display(),
        machine.nproc,
        machine.cpu_model,
        machine.mem_total_kib / 1024,
        machine.load_average_at_start,
        machine.git_commit,
        if machine.git_dirty { " (dirty)" } else { "" }
    );
    let mut results = Vec::new();
    for case in &args.cases {
        println!("\n== {} ==", case.label());
        let r = run_case(&args.operator, *case, &args.operator_env).await?;
        print_case(&r);
        results.push(r);
    }
    let report = Report {
        machine,
        operator_binary: args.operator.display().to_string(),
        binary_bytes,
        binary_mib: binary_bytes as f64 / MIB,
        settings: json!({
            "fake_ecr_token_lifetime_s": "3 x the refresh delay: 10 s (1 CR) or 30 s (10 CRs), longer for large cases and lags, so the sync ends first",
            "refresh.beforeExpiry": "2 x the refresh delay",
            "refresh.minInterval": "1s",
            "watch_lag": "each event trails its write by the case's lag plus up to half more (seeded)",
            "operator_env": args.operator_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "operator_flags": "--api-server <emulator> --health-probe-bind-address 127.0.0.1:P --metrics-bind-address 127.0.0.1:P (defaults otherwise: 4 workers)",
            "emulators": "in the bench process (they share its CPU with the operator)",
        }),
        targets: json!({
            "sync_1000_ns_s": "< 2",
            "api_requests_per_namespace_first_sync": "<= 2, at any lag",
            "api_requests_per_namespace_refresh": "1, at any lag",
            "rss_1000_ns_mib": "steady <= 9, peak <= 11",
            "rss_10000_ns_mib": "steady <= 20, peak <= 28",
            "rss_10_crs_x_1000_ns_mib": "peak <= 16",
            "cpu_one_refresh_of_10000_secrets_s": "<= 0.5",
            "ecr_calls_per_refresh": "1 per credential group",
            "writes_on_noop_reconcile": 0,
            "stripped_binary_mib": "<= 4.5",
        }),
        python_reference: json!({
            "api_requests_per_namespace": 4,
            "ecr_calls_per_namespace": 1,
            "rss_mb": 105,
            "sync_100_ns_s": 4.4,
        }),
        cases: results,
    };
    let table = markdown_table(&report);
    println!("\n{table}");
    write_file(
        &args.out,
        &serde_json::to_string_pretty(&report).unwrap_or_default(),
    )?;
    write_file(&args.table, &table)?;
    println!("wrote {} and {}", args.out.display(), args.table.display());
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", text.trim_end()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

async fn run_case(
    binary: &Path,
    case: Case,
    env: &[(String, String)],
) -> Result<CaseResult, String> {
    let mut r = CaseResult {
        case: case.label(),
        namespaces: case.namespaces,
        crs: case.crs,
        lag_ms: case.lag_ms,
        target_secrets: case.targets(),
        ..Default::default()
    };
    let k8s = K8sEmulator::start(EmulatorConfig {
        // The real server sends a bookmark about once a minute.
        bookmark_interval: Some(Duration::from_secs(60)),
        history_size: 400_000,
        request_log_capacity: 2_000_000,
        watch_lag: WatchLag {
            fixed_ms: case.lag_ms,
            random_ms: case.lag_ms / 2,
            seed: 42,
            ..WatchLag::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the Kubernetes emulator: {e}"))?;
    let aws = AwsEmulator::start(AwsEmulatorConfig {
        token_lifetime: case.token_lifetime(),
        ..AwsEmulatorConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the fake AWS: {e}"))?;
    for i in 0..case.namespaces {
        k8s.apply(
            "namespaces",
            json!({"metadata": {"name": ns_name(i), "labels": {"bench": "yes"}}}),
        )
        .map_err(|e| format!("cannot create a namespace: {e}"))?;
    }
    k8s.clear_requests();

    let mut op = Launch::new(binary, k8s.url(), aws.url())
        .metrics(true)
        .rust_log("warn")
        .envs(env.iter().cloned())
        .spawn()?;
    let outcome = measure(&k8s, &aws, &mut op, case, &mut r).await;
    r.rss_peak_kib = proc_status(op.pid, "VmHWM:");
    match op.terminate(Duration::from_secs(25)).await {
        Ok(status) => r.operator_exit = status.to_string(),
        Err(e) => r.operator_exit = e,
    }
    k8s.shutdown().await;
    outcome.map(|_| r)
}

async fn measure(
    k8s: &K8sEmulator,
    aws: &AwsEmulator,
    op: &mut OperatorChild,
    case: Case,
    r: &mut CaseResult,
) -> Result<(), String> {
    let ready = op.wait_ready(Duration::from_secs(30)).await?;
    r.start_to_ready_s = ready.as_secs_f64();
    r.startup_requests = traffic(k8s, case);
    r.rss_after_ready_kib = proc_status(op.pid, "VmRSS:");
    println!("  start -> ready         {:.3} s", r.start_to_ready_s);

    // --- initial sync
    k8s.clear_requests();
    let ecr0 = aws.calls().ecr;
    let cpu0 = cpu_seconds(op.pid);
    let reconciles_before = reconcile_count(op).await;
    let t0 = Instant::now();
    for c in 0..case.crs {
        k8s.apply("ecrpullsecrets", cr(c, case))
            .map_err(|e| format!("the emulator refused the bench CR: {e}"))?;
    }
    let mut watch = SecretWatch::new(case);
    let deadline = case.deadline();
    let secrets_at = poll(deadline, POLL, async || {
        watch.all_valid(k8s).then(|| t0.elapsed())
    })
    .await;
    r.sync_secrets_s = secrets_at.map(|d| d.as_secs_f64());
    let complete_at = poll(deadline, POLL, async || {
        (sas_complete(k8s, case) && crs_ready(k8s, case)).then(|| t0.elapsed())
    })
    .await;
    r.sync_complete_s = complete_at.map(|d| d.as_secs_f64());
    settle(k8s).await;
    r.initial_sync = traffic(k8s, case);
    r.initial_sync_ecr_calls = aws.calls().ecr - ecr0;
    r.initial_sync_cpu_s = cpu_seconds(op.pid) - cpu0;
    r.initial_sync_reconciles = reconcile_count(op).await.saturating_sub(reconciles_before);
    r.rss_steady_kib = proc_status(op.pid, "VmRSS:");
    r.rss_steady_anon_kib = proc_status(op.pid, "RssAnon:");
    r.rss_steady_file_kib = proc_status(op.pid, "RssFile:");
    r.threads_steady = proc_status(op.pid, "Threads:");
    println!(
        "  CR -> Secrets valid    {}   (complete with SAs + status: {})",
        secs(r.sync_secrets_s),
        secs(r.sync_complete_s)
    );
    if secrets_at.is_none() || complete_at.is_none() {
        r.notes.push(format!(
            "initial sync incomplete after {deadline:?}: {} of {} Secrets valid; operator log tail: {}",
            watch.valid.len(),
            case.targets(),
            op.log_tail(5)
        ));
        return Ok(());
    }

    // --- one refresh: the fake ECR's tokens live 30 s, the CR refreshes 20 s before.
    let before = watch.expiries(k8s);
    let refresh_at =
        earliest_refresh_at(k8s, case).ok_or("no refresh-at annotation on the managed Secrets")?;
    let until = refresh_at - OffsetDateTime::now_utc() - time::Duration::seconds(1);
    if until.is_positive() {
        tokio::time::sleep(Duration::try_from(until).unwrap_or_default()).await;
    } else {
        r.notes.push(
            "the refresh was due before the initial sync settled: its window overlaps".into(),
        );
    }
    k8s.clear_requests();
    let ecr1 = aws.calls().ecr;
    let cpu1 = cpu_seconds(op.pid);
    let mut first_renewed = None;
    let refreshed = poll(case.deadline(), POLL, async || {
        let (any, all) = watch.changed(k8s, &before);
        if any && first_renewed.is_none() {
            first_renewed = Some(Instant::now());
        }
        all.then(Instant::now)
    })
    .await;
    settle(k8s).await;
    r.refresh = traffic(k8s, case);
    r.refresh_ecr_calls = aws.calls().ecr - ecr1;
    r.refresh_cpu_s = cpu_seconds(op.pid) - cpu1;
    r.refresh_s = refreshed
        .zip(first_renewed)
        .map(|(all, first)| (all - first).as_secs_f64());
    println!(
        "  refresh                {}   ({} requests, {} ECR calls, {:.3} CPU s)",
        secs(r.refresh_s),
        r.refresh.total - r.refresh.watches,
        r.refresh_ecr_calls,
        r.refresh_cpu_s
    );
    if refreshed.is_none() {
        r.notes.push(format!(
            "the refresh did not complete within {:?}",
            case.deadline()
        ));
        return Ok(());
    }

    // --- a reconcile that changes nothing: touch every CR (metadata only) and a
    // namespace's unrelated label, which enqueues every CR.
    k8s.clear_requests();
    let reconciles0 = reconcile_count(op).await;
    for c in 0..case.crs {
        if let Some(mut obj) = k8s.get("ecrpullsecrets", None, &cr_name(c)) {
            obj["metadata"]["annotations"] = json!({"bench/touched": "yes"});
            k8s.apply("ecrpullsecrets", obj)
                .map_err(|e| format!("cannot touch the CR: {e}"))?;
        }
    }
    if let Some(mut ns) = k8s.get("namespaces", None, &ns_name(0)) {
        ns["metadata"]["labels"]["bench-touched"] = json!("yes");
        k8s.apply("namespaces", ns)
            .map_err(|e| format!("cannot touch a namespace: {e}"))?;
    }
    let mut seen = 0;
    for _ in 0..100 {
        seen = reconcile_count(op).await.saturating_sub(reconciles0);
        if seen >= case.crs as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(k8s).await;
    r.noop_reconciles_seen = seen;
    r.noop = traffic(k8s, case);
    println!(
        "  no-op reconcile        {} writes, {} reads ({} reconciles seen)",
        r.noop.writes, r.noop.reads, seen
    );
    Ok(())
}

fn ns_name(i: usize) -> String {
    format!("bench-{i:04}")
}

fn cr_name(c: usize) -> String {
    format!("bench-{c}")
}

fn secret_name(c: usize) -> String {
    format!("ecr-pull-{c}")
}

fn cr(c: usize, case: Case) -> Value {
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

/// Tracks which target Secrets are valid, re-checking only those whose resourceVersion
/// moved, and only when the emulator's global resourceVersion moved (cheap polling: the
/// bench shares the CPU with the operator).
struct SecretWatch {
    case: Case,
    last_rv: u64,
    /// (namespace, name) -> (resourceVersion, expires-at) of valid Secrets.
    valid: HashMap<(String, String), (String, String)>,
}

impl SecretWatch {
    fn new(case: Case) -> Self {
        SecretWatch {
            case,
            last_rv: 0,
            valid: HashMap::new(),
        }
    }

    fn refresh(&mut self, k8s: &K8sEmulator) {
        let rv = k8s.resource_version();
        if rv == self.last_rv {
            return;
        }
        self.last_rv = rv;
        for s in k8s.list("secrets", None) {
            let meta = &s["metadata"];
            let key = (
                meta["namespace"].as_str().unwrap_or("").to_string(),
                meta["name"].as_str().unwrap_or("").to_string(),
            );
            if !key.1.starts_with("ecr-pull-") {
                continue;
            }
            let srv = meta["resourceVersion"].as_str().unwrap_or("").to_string();
            if self.valid.get(&key).is_some_and(|(v, _)| *v == srv) {
                continue;
            }
            if secret_valid(&s) {
                let exp = meta["annotations"][EXPIRES]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                self.valid.insert(key, (srv, exp));
            } else {
                self.valid.remove(&key);
            }
        }
    }

    fn all_valid(&mut self, k8s: &K8sEmulator) -> bool {
        self.refresh(k8s);
        self.valid.len() >= self.case.targets()
    }

    fn expiries(&mut self, k8s: &K8sEmulator) -> HashMap<(String, String), String> {
        self.refresh(k8s);
        self.valid
            .iter()
            .map(|(k, (_, e))| (k.clone(), e.clone()))
            .collect()
    }

    /// (some Secret holds a new token, every Secret is valid and holds a new token).
    fn changed(
        &mut self,
        k8s: &K8sEmulator,
        before: &HashMap<(String, String), String>,
    ) -> (bool, bool) {
        self.refresh(k8s);
        let renewed = self
            .valid
            .iter()
            .filter(|(k, (_, e))| before.get(*k).is_none_or(|b| b != e))
            .count();
        (renewed > 0, renewed >= self.case.targets())
    }
}

/// A dockerconfigjson Secret, owned by a bench CR, with a credential for the registry and
/// an expiry in the future.
fn secret_valid(s: &Value) -> bool {
    if s["type"] != "kubernetes.io/dockerconfigjson" {
        return false;
    }
    let ann = &s["metadata"]["annotations"];
    if !ann[OWNER].as_str().is_some_and(|o| o.starts_with("bench-")) {
        return false;
    }
    let future = ann[EXPIRES]
        .as_str()
        .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok())
        .is_some_and(|e| e > OffsetDateTime::now_utc());
    let config = s["data"][".dockerconfigjson"]
        .as_str()
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
    future
        && config.is_some_and(|c| {
            c["auths"][REGISTRY]["auth"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        })
}

fn sas_complete(k8s: &K8sEmulator, case: Case) -> bool {
    let sas = k8s.list("serviceaccounts", None);
    let mut done = 0;
    for sa in &sas {
        if !sa["metadata"]["namespace"]
            .as_str()
            .is_some_and(|n| n.starts_with("bench-"))
        {
            continue;
        }
        let names: Vec<&str> = sa["imagePullSecrets"]
            .as_array()
            .map(|l| l.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        if (0..case.crs).all(|c| names.contains(&secret_name(c).as_str())) {
            done += 1;
        }
    }
    done >= case.namespaces
}

fn crs_ready(k8s: &K8sEmulator, case: Case) -> bool {
    (0..case.crs).all(|c| {
        k8s.get("ecrpullsecrets", None, &cr_name(c))
            .is_some_and(|cr| {
                cr["status"]["syncedNamespaces"].as_u64() == Some(case.namespaces as u64)
                    && cr["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
    })
}

fn earliest_refresh_at(k8s: &K8sEmulator, case: Case) -> Option<OffsetDateTime> {
    k8s.list("secrets", None)
        .iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| (0..case.crs).any(|c| secret_name(c) == n))
        })
        .filter_map(|s| {
            s["metadata"]["annotations"][REFRESH]
                .as_str()
                .map(str::to_string)
        })
        .filter_map(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
        .min()
}

/// Waits until the request log stops growing (bounded).
async fn settle(k8s: &K8sEmulator) {
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

fn traffic(k8s: &K8sEmulator, case: Case) -> Traffic {
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
async fn reconcile_count(op: &OperatorChild) -> u64 {
    let Some(addr) = op.metrics_addr else {
        return 0;
    };
    let Ok(answer) = client::get(addr, "/metrics").await else {
        return 0;
    };
    if answer.status != 200 {
        return 0;
    }
    answer
        .text()
        .lines()
        .filter(|l| l.starts_with("ecr_creds_refresher_reconcile_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A `/proc/<pid>/status` field in KiB (0 if unreadable).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the ")" that ends the command name; utime and stime are 14th and 15th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    command_output("getconf", &["CLK_TCK"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0)
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    Machine {
        date: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        git_commit: command_output("git", &["rev-parse", "HEAD"])
            .unwrap_or_else(|| "unknown".into()),
        git_dirty: command_output("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty()),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        mem_total_kib,
        load_average_at_start: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        rustc: command_output("rustc", &["--version"]).unwrap_or_default(),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn secs(s: Option<f64>) -> String {
    s.map_or("timeout".into(), |s| format!("{s:.3} s"))
}

fn print_case(r: &CaseResult) {
    println!(
        "  initial sync           {:.2} req/target ({:.2} writes), {} ECR calls, {:.3} CPU s, {} reconciles",
        r.initial_sync.per_target,
        r.initial_sync.writes_per_target,
        r.initial_sync_ecr_calls,
        r.initial_sync_cpu_s,
        r.initial_sync_reconciles
    );
    for (k, v) in &r.initial_sync.by_verb {
        println!("      {v:>7}  {k}");
    }
    println!(
        "  RSS                    after ready {} MiB, steady {} MiB (anon {} + files {}), peak {} MiB, {} threads",
        mib(r.rss_after_ready_kib),
        mib(r.rss_steady_kib),
        mib(r.rss_steady_anon_kib),
        mib(r.rss_steady_file_kib),
        mib(r.rss_peak_kib),
        r.threads_steady
    );
    for n in &r.notes {
        println!("  note: {n}");
    }
}

/// The README table: one column per case, targets and the Python reference alongside.
fn markdown_table(report: &Report) -> String {
    let mut out = String::new();
    let mut lags: Vec<u64> = report.cases.iter().map(|c| c.lag_ms).collect();
    lags.dedup();
    for lag in lags {
        let cases: Vec<&CaseResult> = report.cases.iter().filter(|c| c.lag_ms == lag).collect();
        out.push_str(&format!(
            "\nWatch events trailing writes by {lag} ms (+ up to {} ms):\n\n",
            lag / 2
        ));
        lag_table(&mut out, &cases);
    }
    let mut out = out.trim_start().to_string();
    let m = &report.machine;
    out.push_str(&format!(
        "\nRelease binary (stripped): {} bytes = {:.2} MiB (target <= 4.5 MiB; the Python reference ships a python:3.11-slim image).\n",
        report.binary_bytes, report.binary_mib
    ));
    out.push_str(&format!(
        "\n¹ Reads and writes after the startup lists and watches, divided by the number of target Secrets (namespaces × CRs); watches excluded. \
Measured by `make bench` on {} ({} CPUs, {} MiB RAM, load {} at start), commit {}, {}. \
The emulators run inside the bench process and share its CPUs; fake ECR tokens live three times the refresh delay (30 s for small cases, longer for large ones and under lag) so a refresh happens during the run. RSS is of the glibc build.\n",
        m.cpu_model,
        m.nproc,
        m.mem_total_kib / 1024,
        m.load_average_at_start,
        &m.git_commit[..m.git_commit.len().min(12)],
        &m.date[..m.date.len().min(10)],
    ));
    out
}

/// One table: the figures of every case at one watch lag, with the targets.
fn lag_table(out: &mut String, cases: &[&CaseResult]) {
    let header: Vec<String> = cases
        .iter()
        .map(|c| {
            if c.crs == 1 {
                format!("{} ns", c.namespaces)
            } else {
                format!("{} CRs x {} ns", c.crs, c.namespaces)
            }
        })
        .collect();
    out.push_str(&format!(
        "| | {} | target | Python reference |\n|---|{}---|---|\n",
        header.join(" | "),
        "---|".repeat(cases.len())
    ));
    let row = |out: &mut String,
               name: &str,
               f: &dyn Fn(&CaseResult) -> String,
               target: &str,
               py: &str| {
        let cells: Vec<String> = cases.iter().map(|c| f(c)).collect();
        out.push_str(&format!(
            "| {name} | {} | {target} | {py} |\n",
            cells.join(" | ")
        ));
    };
    let opt = |s: Option<f64>| s.map_or("timeout".to_string(), |s| format!("{s:.2} s"));
    row(
        out,
        "CR created → every Secret valid",
        &|c| opt(c.sync_secrets_s),
        "< 2 s at 1000 ns",
        "4.4 s at 100 ns",
    );
    row(
        out,
        "… and every ServiceAccount patched, status Ready",
        &|c| opt(c.sync_complete_s),
        "",
        "",
    );
    row(
        out,
        "API requests per namespace, first sync ¹",
        &|c| format!("{:.2}", c.initial_sync.per_target),
        "≤ 2",
        "4",
    );
    row(
        out,
        "… of which answered with an error (409 …)",
        &|c| c.initial_sync.errors.to_string(),
        "0",
        "",
    );
    row(
        out,
        "API requests per namespace, one refresh ¹",
        &|c| format!("{:.2}", c.refresh.per_target),
        "1",
        "4",
    );
    row(
        out,
        "ECR calls, first sync / one refresh",
        &|c| format!("{} / {}", c.initial_sync_ecr_calls, c.refresh_ecr_calls),
        "1 per credential group",
        "1 per namespace",
    );
    row(
        out,
        "Writes on a no-op reconcile",
        &|c| c.noop.writes.to_string(),
        "0",
        "n/a (rewrites all)",
    );
    row(
        out,
        "Refresh: first → last Secret renewed",
        &|c| opt(c.refresh_s),
        "",
        "",
    );
    row(
        out,
        "CPU per refresh cycle",
        &|c| format!("{:.3} s", c.refresh_cpu_s),
        "≤ 0.5 s at 10000 ns",
        "",
    );
    row(
        out,
        "RSS steady after sync (VmRSS)",
        &|c| format!("{} MiB", mib(c.rss_steady_kib)),
        "≤ 9 MiB at 1000 ns, ≤ 20 at 10000",
        "",
    );
    row(
        out,
        "… of which anonymous (heap, stacks) / file-backed (binary, libc)",
        &|c| {
            format!(
                "{} / {} MiB",
                mib(c.rss_steady_anon_kib),
                mib(c.rss_steady_file_kib)
            )
        },
        "",
        "",
    );
    row(
        out,
        "RSS peak (VmHWM)",
        &|c| format!("{} MiB", mib(c.rss_peak_kib)),
        "≤ 11 MiB at 1000 ns, ≤ 28 at 10000, ≤ 16 at 10 CRs x 1000",
        "~105 MB",
    );
    row(
        out,
        "Start → ready (/readyz)",
        &|c| format!("{:.3} s", c.start_to_ready_s),
        "",
        "",
    );
}
