//! `make bench`: speed, API traffic, AWS calls, memory and CPU of the release operator
//! binary, run as a child process against the in-repo emulators (in this process).
//!
//! Cases: one ECRPullSecret over 10, 100, 1000 and 10000 namespaces, 10 ECRPullSecrets
//! over the same 1000 namespaces and 100 over 100, each against watches that deliver at once and that
//! trail their writes by 200 ms and by 2 s (plus up to half more at random), as a busy
//! API server's do: a request count that only holds on an instant echo is no figure.
//! Each case gets a fresh emulator and a fresh operator, then:
//! start -> ready (`/readyz`), CR -> every Secret valid (emulator state polled directly),
//! the requests of the initial sync (emulator request log), one token refresh (the fake
//! ECR issues 30 s tokens, the CR refreshes 20 s before expiry), a no-op reconcile, and
//! RSS / CPU from /proc: the operator's, and this process's split into the emulators'
//! threads (their own runtime) and the rest (the harness polling their state), so a reader
//! sees which side bounds the time. The operator's /metrics say where its Secret writes
//! spend their time (body, request, parsing the answer, cache). Figures are printed next to the targets and the Python reference
//! operator's; nothing is asserted (a benchmark, not a test).
//!
//! Usage: bench --operator <release binary> [--out bench/latest.json] [--table bench/README-table.md]
//!              [--cases 10,100,1000,10000,10x1000,100x100] [--lags 0,200,2000]
//!              [--plain-http] [--operator-env K=V]...
//!
//! The emulated API server speaks TLS with HTTP/2 offered through ALPN, as a real one
//! does; `--plain-http` serves HTTP/1.1 without TLS instead (as `kubectl proxy`).
#![forbid(unsafe_code)]

mod case;
mod measure;
mod process;
mod report;
mod secrets;
mod traffic;
mod write_phases;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use case::Case;
use measure::run_case;
use process::{emulator_runtime, machine};
use report::{markdown_table, print_case, Report, MIB};

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
    let mut sizes = vec![
        (10, 1),
        (100, 1),
        (1000, 1),
        (10_000, 1),
        (1000, 10),
        (100, 100),
    ];
    let mut lags = vec![0, 200, 2000];
    let mut operator_env = Vec::new();
    let mut tls = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--operator" => operator = Some(PathBuf::from(value()?)),
            "--out" => out = PathBuf::from(value()?),
            "--table" => table = PathBuf::from(value()?),
            "--plain-http" => tls = false,
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
                    .ok_or("--cases: e.g. 10,100,1000,10000,10x1000,100x100")?
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
                tls,
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
            eprintln!("usage: bench --operator <release binary> [--out FILE] [--table FILE] [--cases 10,100,1000,10000,10x1000,100x100] [--lags 0,200,2000] [--plain-http] [--operator-env K=V]");
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
    let emulators = match emulator_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the emulators' runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C drops the running case: its operator child is killed on drop.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args, emulators.handle()) => r,
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

/// "dynamic" when the ELF binary names a program interpreter (PT_INTERP), "static" when
/// it names none, "unknown" for a file that is no 64-bit ELF (a wrapper script that runs
/// the operator under heaptrack or perf, say).
fn linking(bytes: &[u8]) -> &'static str {
    const PT_INTERP: u64 = 3;
    let field = |at: usize, len: usize| -> Option<u64> {
        let raw = bytes.get(at..at.checked_add(len)?)?;
        Some(
            raw.iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    };
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return "unknown";
    }
    let (Some(offset), Some(size), Some(count)) = (field(0x20, 8), field(0x36, 2), field(0x38, 2))
    else {
        return "unknown";
    };
    let header = |i: u64| {
        field(
            usize::try_from(offset.checked_add(i.checked_mul(size)?)?).ok()?,
            4,
        )
    };
    let interp = (0..count).any(|i| header(i) == Some(PT_INTERP));
    if interp {
        "dynamic"
    } else {
        "static"
    }
}

async fn run(args: &Args, emulators: &tokio::runtime::Handle) -> Result<(), String> {
    // Read once: its size and its linking.
    let binary =
        std::fs::read(&args.operator).map_err(|e| format!("{}: {e}", args.operator.display()))?;
    let (binary_bytes, binary_linking) = (binary.len() as u64, linking(&binary));
    drop(binary);
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
        let r = run_case(&args.operator, *case, &args.operator_env, emulators).await?;
        print_case(&r);
        results.push(r);
    }
    let report = Report {
        machine,
        operator_binary: args.operator.display().to_string(),
        binary_bytes,
        binary_mib: binary_bytes as f64 / MIB,
        binary_linking,
        settings: json!({
            "fake_ecr_token_lifetime_s": "3 x the refresh delay: 10 s (1 CR) or 30 s (10 CRs), longer for large cases and lags, so the sync ends first",
            "refresh.beforeExpiry": "2 x the refresh delay",
            "refresh.minInterval": "1s",
            "watch_lag": "each event trails its write by the case's lag plus up to half more (seeded)",
            "operator_env": args.operator_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "operator_flags": "--api-server <emulator> [--ca-file <its CA>] --health-probe-bind-address 127.0.0.1:P --metrics-bind-address 127.0.0.1:P (defaults otherwise: 4 workers)",
            "api_server_wire": if args.cases.first().is_some_and(|c| c.tls) { "TLS, HTTP/2 offered through ALPN (as a real API server)" } else { "plain HTTP/1.1 (as kubectl proxy)" },
            "emulators": "in the bench process, on their own 2-thread runtime whose threads' CPU is read from /proc (they share the machine's CPUs with the operator)",
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
