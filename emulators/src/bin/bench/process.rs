//! The operator process and the machine, from /proc and a few commands: memory, CPU
//! time, and what the report says about where it ran.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub date: String,
    pub git_commit: String,
    pub git_dirty: bool,
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_kib: u64,
    pub load_average_at_start: String,
    pub rustc: String,
}

/// A `/proc/<pid>/status` field in KiB (0 if unreadable).
pub(crate) fn proc_status(pid: u32, field: &str) -> u64 {
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
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0.0, |s| stat_cpu_seconds(&s))
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> f64 {
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
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        command_output("getconf", &["CLK_TCK"])
            .and_then(|s| s.parse().ok())
            .unwrap_or(100.0)
    })
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn machine() -> Machine {
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

/// Name prefix of the threads that run the emulators.
const EMULATOR_THREAD: &str = "emulator";

/// CPU seconds of this (bench) process: (emulator threads, the rest: the harness that
/// polls the emulators' state and the runtime it runs on).
pub(crate) fn bench_cpu_seconds() -> (f64, f64) {
    let total = cpu_seconds(std::process::id());
    let mut emulator = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, total);
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("", |(comm, _)| comm);
        if comm.starts_with(EMULATOR_THREAD) {
            emulator += stat_cpu_seconds(&stat);
        }
    }
    (emulator, (total - emulator).max(0.0))
}

/// A runtime whose threads are named for [`bench_cpu_seconds`]: the emulators run on it,
/// so their CPU is told apart from the harness's.
pub(crate) fn emulator_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(EMULATOR_THREAD)
        .enable_all()
        .build()
}

/// CPU seconds spent by each side of a case: the operator (its process), the emulators
/// (their threads in this process) and the harness (the rest of this process: polling the
/// emulators' state for the figures).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Cpu {
    pub operator_s: f64,
    pub emulator_s: f64,
    pub harness_s: f64,
}

// === impl Cpu ===

impl Cpu {
    pub(crate) fn now(operator_pid: u32) -> Cpu {
        let (emulator_s, harness_s) = bench_cpu_seconds();
        Cpu {
            operator_s: cpu_seconds(operator_pid),
            emulator_s,
            harness_s,
        }
    }

    /// What each side spent since `earlier`.
    pub(crate) fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            operator_s: self.operator_s - earlier.operator_s,
            emulator_s: self.emulator_s - earlier.emulator_s,
            harness_s: self.harness_s - earlier.harness_s,
        }
    }
}

/// The operator's API traffic: bytes the API server received from it and sent to it
/// (counted on the server's sockets, TLS records and HTTP/2 frames included; the operator
/// is its only client in a bench), and the operator's write system calls
/// (`/proc/<pid>/io`; its reads go through `recv`, which that file does not count).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Io {
    pub to_server_bytes: u64,
    pub from_server_bytes: u64,
    pub write_calls: u64,
}

// === impl Io ===

impl Io {
    /// Write calls are zero when `/proc/<pid>/io` cannot be read.
    pub(crate) fn now(pid: u32, k8s: &emulators::k8s::K8sEmulator) -> Io {
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        let write_calls = text
            .lines()
            .find_map(|l| l.strip_prefix("syscw:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let (to_server_bytes, from_server_bytes) = k8s.traffic_bytes();
        Io {
            to_server_bytes,
            from_server_bytes,
            write_calls,
        }
    }

    /// What passed since `earlier`.
    pub(crate) fn since(self, earlier: Io) -> Io {
        Io {
            to_server_bytes: self.to_server_bytes.saturating_sub(earlier.to_server_bytes),
            from_server_bytes: self
                .from_server_bytes
                .saturating_sub(earlier.from_server_bytes),
            write_calls: self.write_calls.saturating_sub(earlier.write_calls),
        }
    }
}
