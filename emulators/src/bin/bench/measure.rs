//! One case end to end: fresh emulators, a fresh operator, then the phases (start, initial
//! sync, one token refresh, a no-op reconcile), each measured from outside the operator.

use std::path::Path;
use std::time::{Duration, Instant};

use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator, WatchLag};
use emulators::operator::{Launch, OperatorChild};
use emulators::wait::poll;
use serde_json::json;
use time::OffsetDateTime;

use super::case::{cr, cr_name, ns_name, Case, CaseResult};
use super::process::{proc_status, Cpu, Io};
use super::report::secs;
use super::secrets::{crs_ready, earliest_refresh_at, sas_complete, SecretWatch};
use super::traffic::{reconcile_count, settle, traffic};
use super::write_phases::WritePhases;

const POLL: Duration = Duration::from_millis(20);

/// Runs `case`; the emulators run on `emulators` (see [`super::process::emulator_runtime`]).
pub(crate) async fn run_case(
    binary: &Path,
    case: Case,
    env: &[(String, String)],
    emulators: &tokio::runtime::Handle,
) -> Result<CaseResult, String> {
    let mut r = CaseResult {
        case: case.label(),
        namespaces: case.namespaces,
        crs: case.crs,
        lag_ms: case.lag_ms,
        target_secrets: case.targets(),
        ..Default::default()
    };
    let k8s_config = EmulatorConfig {
        // The real server sends a bookmark about once a minute.
        bookmark_interval: Some(Duration::from_secs(60)),
        history_size: 400_000,
        tls: case.tls,
        request_log_capacity: 2_000_000,
        watch_lag: WatchLag {
            fixed_ms: case.lag_ms,
            random_ms: case.lag_ms / 2,
            seed: 42,
            ..WatchLag::default()
        },
        ..EmulatorConfig::default()
    };
    let aws_config = AwsEmulatorConfig {
        token_lifetime: case.token_lifetime(),
        ..AwsEmulatorConfig::default()
    };
    // Started from a task of the emulators' runtime, so every task they spawn runs there.
    let k8s = emulators
        .spawn(K8sEmulator::start(k8s_config))
        .await
        .map_err(|e| format!("the Kubernetes emulator's start panicked: {e}"))?
        .map_err(|e| format!("cannot start the Kubernetes emulator: {e}"))?;
    let aws = emulators
        .spawn(AwsEmulator::start(aws_config))
        .await
        .map_err(|e| format!("the fake AWS's start panicked: {e}"))?
        .map_err(|e| format!("cannot start the fake AWS: {e}"))?;
    for i in 0..case.namespaces {
        k8s.apply(
            "namespaces",
            json!({"metadata": {"name": ns_name(i), "labels": {"bench": "yes"}}}),
        )
        .map_err(|e| format!("cannot create a namespace: {e}"))?;
    }
    k8s.clear_requests();

    let mut launch = Launch::new(binary, k8s.url(), aws.url());
    if let Some(pem) = k8s.ca_pem() {
        let ca = std::env::temp_dir().join(format!("bench-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        launch = launch.args(["--ca-file".to_string(), ca.display().to_string()]);
    }
    let mut op = launch
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

/// What a phase measures: the emulators, the running operator, and the case.
#[derive(Clone, Copy)]
struct Peers<'a> {
    k8s: &'a K8sEmulator,
    aws: &'a AwsEmulator,
    op: &'a OperatorChild,
    case: Case,
}

/// The phases in order; a phase that does not finish leaves a note and ends the case.
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
    let peers = Peers { k8s, aws, op, case };
    let mut watch = SecretWatch::new(case);
    if !initial_sync(peers, r, &mut watch).await? {
        return Ok(());
    }
    if !one_refresh(peers, r, &mut watch).await? {
        return Ok(());
    }
    noop_reconcile(k8s, op, case, r).await
}

/// CR created -> every Secret valid -> every ServiceAccount and status done. False when
/// the sync did not complete in time.
async fn initial_sync(
    peers: Peers<'_>,
    r: &mut CaseResult,
    watch: &mut SecretWatch,
) -> Result<bool, String> {
    let Peers { k8s, aws, op, case } = peers;
    k8s.clear_requests();
    let ecr0 = aws.calls().ecr;
    let writes0 = WritePhases::read(op).await;
    let cpu0 = Cpu::now(op.pid);
    let reconciles_before = reconcile_count(op).await;
    let t0 = Instant::now();
    for c in 0..case.crs {
        k8s.apply("ecrpullsecrets", cr(c, case))
            .map_err(|e| format!("the emulator refused the bench CR: {e}"))?;
    }
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
    settle(k8s, case).await;
    r.initial_sync = traffic(k8s, case);
    r.initial_sync_ecr_calls = aws.calls().ecr - ecr0;
    let cpu = Cpu::now(op.pid).since(cpu0);
    r.initial_sync_cpu_s = cpu.operator_s;
    r.initial_sync_cpu = cpu;
    r.initial_sync_writes = WritePhases::read(op).await.since(writes0);
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
        return Ok(false);
    }
    Ok(true)
}

/// One refresh: the fake ECR's tokens live 30 s, the CR refreshes 20 s before. False when
/// the refresh did not complete in time.
async fn one_refresh(
    peers: Peers<'_>,
    r: &mut CaseResult,
    watch: &mut SecretWatch,
) -> Result<bool, String> {
    let Peers { k8s, aws, op, case } = peers;
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
    let http2_before = k8s.http2_requests();
    let ecr1 = aws.calls().ecr;
    let writes1 = WritePhases::read(op).await;
    let cpu1 = Cpu::now(op.pid);
    let io1 = Io::now(op.pid, k8s);
    let mut first_renewed = None;
    let refreshed = poll(case.deadline(), POLL, async || {
        let (any, all) = watch.changed(k8s, &before);
        if any && first_renewed.is_none() {
            first_renewed = Some(Instant::now());
        }
        all.then(Instant::now)
    })
    .await;
    settle(k8s, case).await;
    r.refresh = traffic(k8s, case);
    r.refresh_ecr_calls = aws.calls().ecr - ecr1;
    r.refresh_http2_requests = k8s.http2_requests() - http2_before;
    let cpu = Cpu::now(op.pid).since(cpu1);
    r.refresh_cpu_s = cpu.operator_s;
    r.refresh_cpu = cpu;
    r.refresh_io = Io::now(op.pid, k8s).since(io1);
    r.refresh_writes = WritePhases::read(op).await.since(writes1);
    r.refresh_s = refreshed
        .zip(first_renewed)
        .map(|(all, first)| (all - first).as_secs_f64());
    println!(
        "  refresh                {}   ({} requests, {} over HTTP/2, {} ECR calls, {:.3} CPU s)",
        secs(r.refresh_s),
        r.refresh.total - r.refresh.watches,
        r.refresh_http2_requests,
        r.refresh_ecr_calls,
        r.refresh_cpu_s
    );
    if refreshed.is_none() {
        r.notes.push(format!(
            "the refresh did not complete within {:?}",
            case.deadline()
        ));
        return Ok(false);
    }
    Ok(true)
}

/// A reconcile that changes nothing: touch every CR (metadata only) and a namespace's
/// unrelated label, which enqueues every CR.
async fn noop_reconcile(
    k8s: &K8sEmulator,
    op: &OperatorChild,
    case: Case,
    r: &mut CaseResult,
) -> Result<(), String> {
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
    settle(k8s, case).await;
    r.noop_reconciles_seen = seen;
    r.noop = traffic(k8s, case);
    println!(
        "  no-op reconcile        {} writes, {} reads ({} reconciles seen)",
        r.noop.writes, r.noop.reads, seen
    );
    Ok(())
}
