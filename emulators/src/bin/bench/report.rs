//! What the bench reports: the JSON document, the per-case lines printed as it goes, and
//! the README's markdown table with the targets and the Python reference beside.

use serde::Serialize;
use serde_json::Value;

use super::case::CaseResult;
use super::process::Machine;

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub machine: Machine,
    pub operator_binary: String,
    pub binary_bytes: u64,
    pub binary_mib: f64,
    /// "static" (the image's musl build) or "dynamic" (a glibc build): the file-backed
    /// RSS differs by the shared C library, about 2 MiB.
    pub binary_linking: &'static str,
    pub settings: Value,
    pub targets: Value,
    pub python_reference: Value,
    pub cases: Vec<CaseResult>,
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

pub(crate) fn secs(s: Option<f64>) -> String {
    s.map_or("timeout".into(), |s| format!("{s:.3} s"))
}

pub(crate) fn print_case(r: &CaseResult) {
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
    for (phase, cpu) in [
        ("initial sync", &r.initial_sync_cpu),
        ("refresh", &r.refresh_cpu),
    ] {
        println!(
            "  CPU, {phase:<17} operator {:.3} s, emulators {:.3} s, bench harness {:.3} s",
            cpu.operator_s, cpu.emulator_s, cpu.harness_s
        );
    }
    let w = &r.refresh_writes;
    println!(
        "  per Secret write       {} (refresh, {} writes), send {:.0} µs wall (in flight, waiting for the server)",
        write_split(r),
        w.writes,
        w.per_write_us(w.send_s)
    );
    println!("  I/O per Secret write   {} (refresh)", io_split(r));
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
pub(crate) fn markdown_table(report: &Report) -> String {
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
        "\nRelease binary (stripped, linked {}): {} bytes = {:.2} MiB (target <= 4.5 MiB; the Python reference ships a python:3.11-slim image).\n",
        report.binary_linking, report.binary_bytes, report.binary_mib
    ));
    out.push_str(&format!(
        "\n¹ Reads and writes after the startup lists and watches, divided by the number of target Secrets (namespaces × CRs); watches excluded. \
Measured by `make bench` on {} ({} CPUs, {} MiB RAM, load {} at start), commit {}, {}. \
The emulators run inside the bench process and share its CPUs; fake ECR tokens live three times the refresh delay (30 s for small cases, longer for large ones and under lag) so a refresh happens during the run. RSS is of the {} build.\n\n\
² The operator's CPU over the refresh divided by its Secret writes; body, parse and cache are timed around those steps in the operator (its `secret_write_seconds_total{{phase}}`), the rest is the remainder.\n",
        m.cpu_model,
        m.nproc,
        m.mem_total_kib / 1024,
        m.load_average_at_start,
        &m.git_commit[..m.git_commit.len().min(12)],
        &m.date[..m.date.len().min(10)],
        report.binary_linking,
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
    for row in sync_rows().iter().chain(cost_rows().iter()) {
        let cells: Vec<String> = cases.iter().map(|c| (row.figure)(c)).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            row.name,
            cells.join(" | "),
            row.target,
            row.python
        ));
    }
}

/// One row of a lag table: what it shows, the figure of one case, the target, and the
/// Python reference operator's figure.
struct Row {
    name: &'static str,
    figure: fn(&CaseResult) -> String,
    target: &'static str,
    python: &'static str,
}

fn opt(s: Option<f64>) -> String {
    s.map_or("timeout".to_string(), |s| format!("{s:.2} s"))
}

/// Speed and API traffic of the sync and the refresh.
fn sync_rows() -> [Row; 7] {
    [
        Row {
            name: "CR created → every Secret valid",
            figure: |c| opt(c.sync_secrets_s),
            target: "< 2 s at 1000 ns",
            python: "4.4 s at 100 ns",
        },
        Row {
            name: "… and every ServiceAccount patched, status Ready",
            figure: |c| opt(c.sync_complete_s),
            target: "",
            python: "",
        },
        Row {
            name: "API requests per namespace, first sync ¹",
            figure: |c| format!("{:.2}", c.initial_sync.per_target),
            target: "≤ 2",
            python: "4",
        },
        Row {
            name: "… of which answered with an error (409 …)",
            figure: |c| c.initial_sync.errors.to_string(),
            target: "0",
            python: "",
        },
        Row {
            name: "API requests per namespace, one refresh ¹",
            figure: |c| format!("{:.2}", c.refresh.per_target),
            target: "1",
            python: "4",
        },
        Row {
            name: "ECR calls, first sync / one refresh",
            figure: |c| format!("{} / {}", c.initial_sync_ecr_calls, c.refresh_ecr_calls),
            target: "1 per credential group",
            python: "1 per namespace",
        },
        Row {
            name: "Writes on a no-op reconcile",
            figure: |c| c.noop.writes.to_string(),
            target: "0",
            python: "n/a (rewrites all)",
        },
    ]
}

/// The operator's CPU per Secret write of the refresh: the measured phases, and the rest
/// of its CPU over the refresh (HTTP and the kernel, the watch's echoes, planning).
fn write_split(r: &CaseResult) -> String {
    let w = &r.refresh_writes;
    let total = w.per_write_us(r.refresh_cpu.operator_s);
    let (build, parse, cache) = (
        w.per_write_us(w.build_s),
        w.per_write_us(w.parse_s),
        w.per_write_us(w.cache_s),
    );
    format!(
        "{total:.0} µs CPU = body {build:.1} + parse {parse:.1} + cache {cache:.1} + rest {:.0}",
        total - build - parse - cache
    )
}

/// The operator's API traffic per Secret write of the refresh: every request, its answer
/// and the watch's echo, through TLS.
fn io_split(r: &CaseResult) -> String {
    let (io, writes) = (&r.refresh_io, r.refresh_writes.writes.max(1) as f64);
    format!(
        "{:.1} KB sent, {:.1} KB received, {:.1} write calls",
        io.to_server_bytes as f64 / writes / 1000.0,
        io.from_server_bytes as f64 / writes / 1000.0,
        io.write_calls as f64 / writes,
    )
}

/// Refresh spread, CPU, memory and start-up.
fn cost_rows() -> [Row; 9] {
    [
        Row {
            name: "Refresh: first → last Secret renewed",
            figure: |c| opt(c.refresh_s),
            target: "",
            python: "",
        },
        Row {
            name: "CPU per refresh cycle",
            figure: |c| format!("{:.3} s", c.refresh_cpu_s),
            target: "≤ 0.5 s at 10000 ns",
            python: "",
        },
        Row {
            name: "… per Secret write: body + parse answer + cache + rest (HTTP, kernel, watch echoes, planning) ²",
            figure: write_split,
            target: "≈ 50 µs",
            python: "",
        },
        Row {
            name: "… per Secret write: API traffic sent / received (requests; answers and watch echoes), write system calls",
            figure: io_split,
            target: "",
            python: "",
        },
        Row {
            name: "Emulators' CPU over the refresh (in the bench process)",
            figure: |c| format!("{:.3} s", c.refresh_cpu.emulator_s),
            target: "",
            python: "",
        },
        Row {
            name: "RSS steady after sync (VmRSS)",
            figure: |c| format!("{} MiB", mib(c.rss_steady_kib)),
            target: "≤ 9 MiB at 1000 ns, ≤ 20 at 10000",
            python: "",
        },
        Row {
            name: "… of which anonymous (heap, stacks) / file-backed (binary, libc)",
            figure: |c| {
                format!(
                    "{} / {} MiB",
                    mib(c.rss_steady_anon_kib),
                    mib(c.rss_steady_file_kib)
                )
            },
            target: "",
            python: "",
        },
        Row {
            name: "RSS peak (VmHWM)",
            figure: |c| format!("{} MiB", mib(c.rss_peak_kib)),
            target: "≤ 11 MiB at 1000 ns, ≤ 28 at 10000, ≤ 16 at 10 CRs x 1000",
            python: "~105 MB",
        },
        Row {
            name: "Start → ready (/readyz)",
            figure: |c| format!("{:.3} s", c.start_to_ready_s),
            target: "",
            python: "",
        },
    ]
}
