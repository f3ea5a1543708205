//! The operator binary as a child process. `demo` and `bench` show and measure exactly
//! what ships, not the library wired in-process; the tests that need a real process
//! (signals, exit codes, several replicas) start it the same way.
//!
//! The child gets a clean environment: only what the fake endpoints need, so the
//! developer's own AWS profile or kubeconfig can never leak in. Its stderr goes to a file,
//! complete once the process has exited, so a test reads every line the operator wrote
//! before it died. The child is killed when its handle drops: an error, a timeout or a
//! panic in the parent never leaves an operator running.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::aws::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use crate::{client, wait};

/// How often [`OperatorChild::wait_ready`] asks `/readyz`: the bench reports start ->
/// ready to the millisecond.
const READY_POLL: Duration = Duration::from_millis(5);
const EXIT_POLL: Duration = Duration::from_millis(20);

/// How to start the operator: its flags and environment.
#[derive(Clone, Debug)]
#[must_use]
pub struct Launch {
    binary: PathBuf,
    api_server: String,
    aws_endpoint: String,
    pod_name: String,
    pod_namespace: Option<String>,
    metrics: bool,
    rust_log: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    verify_registries: bool,
}

/// A running operator process.
pub struct OperatorChild {
    child: Child,
    /// The process id, for readings under `/proc`.
    pub pid: u32,
    /// Its POD_NAME: the holder identity in the Lease.
    pub pod_name: String,
    /// Where `/healthz` and `/readyz` answer.
    pub probe_addr: SocketAddr,
    /// Where `/metrics` answers, when the launch asked for metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Just before the process was started.
    pub started: Instant,
    log_path: PathBuf,
}

// === impl Launch ===

impl Launch {
    /// `binary` against the Kubernetes API at `api_server` and the fake AWS at
    /// `aws_endpoint`; logs at `info`, no metrics listener, POD_NAME
    /// `ecr-creds-refresher-demo` and no POD_NAMESPACE.
    pub fn new(
        binary: impl Into<PathBuf>,
        api_server: impl Into<String>,
        aws_endpoint: impl Into<String>,
    ) -> Launch {
        Launch {
            binary: binary.into(),
            api_server: api_server.into(),
            aws_endpoint: aws_endpoint.into(),
            pod_name: "ecr-creds-refresher-demo".into(),
            pod_namespace: None,
            metrics: false,
            rust_log: "info".into(),
            args: Vec::new(),
            env: Vec::new(),
            verify_registries: false,
        }
    }

    /// Check tokens at the registries (off by default: the fake account's hosts do not
    /// resolve; point ECR_REGISTRY_ENDPOINT_URL at a [`crate::registry::Registry`]).
    pub fn verify_registries(mut self, on: bool) -> Launch {
        self.verify_registries = on;
        self
    }

    /// POD_NAME: the replica's identity in the Lease and its User-Agent.
    pub fn pod_name(mut self, name: &str) -> Launch {
        self.pod_name = name.into();
        self
    }

    /// POD_NAMESPACE: the operator's own namespace.
    pub fn pod_namespace(mut self, namespace: &str) -> Launch {
        self.pod_namespace = Some(namespace.into());
        self
    }

    /// Serve `/metrics` on a loopback port of its own.
    pub fn metrics(mut self, on: bool) -> Launch {
        self.metrics = on;
        self
    }

    /// RUST_LOG.
    pub fn rust_log(mut self, filter: &str) -> Launch {
        self.rust_log = filter.into();
        self
    }

    /// More flags, after the ones every launch has.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// More environment (e.g. `MALLOC_ARENA_MAX=2` experiments).
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Launch {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Starts the process, probes (and metrics) on free loopback ports.
    pub fn spawn(&self) -> Result<OperatorChild, String> {
        let probe_addr = free_port()?;
        let metrics_addr = if self.metrics {
            Some(free_port()?)
        } else {
            None
        };
        let log_path = std::env::temp_dir().join(format!(
            "ecr-creds-refresher-{}-{}-{}.log",
            self.pod_name,
            std::process::id(),
            probe_addr.port()
        ));
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut cmd = self.command(probe_addr, metrics_addr);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        Ok(OperatorChild {
            pid: child.id(),
            child,
            pod_name: self.pod_name.clone(),
            probe_addr,
            metrics_addr,
            started,
            log_path,
        })
    }

    fn command(&self, probe_addr: SocketAddr, metrics_addr: Option<SocketAddr>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("AWS_ENDPOINT_URL", &self.aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POD_NAME", &self.pod_name)
            .env("RUST_LOG", &self.rust_log)
            .arg("--api-server")
            .arg(&self.api_server)
            .arg("--health-probe-bind-address")
            .arg(probe_addr.to_string())
            .arg("--metrics-bind-address")
            .arg(metrics_addr.map_or("0".to_string(), |a| a.to_string()))
            // Short-lived fake tokens refresh every few seconds.
            .args(["--min-refresh-interval", "1s"])
            .args(&self.args);
        if !self.verify_registries {
            cmd.arg("--verify-registries=false");
        }
        if let Some(ns) = &self.pod_namespace {
            cmd.env("POD_NAMESPACE", ns);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

// === impl OperatorChild ===

impl OperatorChild {
    /// Everything the operator wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// [`OperatorChild::log`], one line each.
    pub fn log_lines(&self) -> Vec<String> {
        self.log().lines().map(str::to_string).collect()
    }

    /// The last `n` lines of the operator's log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let from = lines.len().saturating_sub(n);
        lines[from..].join("\n")
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `within` for the process to exit; `None` if it still runs.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait::poll(within, EXIT_POLL, async || self.exited()).await
    }

    /// Polls `/readyz` until it answers 200; how long that took from the start. Fails
    /// early if the process dies.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<Duration, String> {
        let ready = wait::poll(within, READY_POLL, async || {
            if let Some(status) = self.exited() {
                return Some(Err(format!(
                    "the operator exited during startup ({status}); its log:\n{}",
                    self.log_tail(20)
                )));
            }
            match client::get(self.probe_addr, "/readyz").await {
                Ok(answer) if answer.status == 200 => Some(Ok(self.started.elapsed())),
                _ => None,
            }
        })
        .await;
        ready.unwrap_or_else(|| {
            Err(format!(
                "the operator was not ready within {within:?}; its log:\n{}",
                self.log_tail(20)
            ))
        })
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) through `kill(1)`: this crate
    /// forbids unsafe code.
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        let sent = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match sent {
            Ok(s) if s.success() => Ok(()),
            _ => Err(format!("could not send SIG{sig} to pid {}", self.pid)),
        }
    }

    /// SIGTERM, then the exit status within `within`.
    pub async fn terminate(&mut self, within: Duration) -> Result<ExitStatus, String> {
        self.signal("TERM")?;
        self.wait_exit(within).await.ok_or_else(|| {
            format!(
                "the operator did not exit within {within:?} of SIGTERM; its log:\n{}",
                self.log_tail(10)
            )
        })
    }
}

impl Drop for OperatorChild {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A loopback address whose port was free a moment ago (the OS hands out ports
/// round-robin, so a race with another test is unlikely).
pub fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}
