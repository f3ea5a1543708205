//! The operator binary as a child process, for `demo` and `bench`: they measure and show
//! exactly what ships, not the library wired in-process.
//!
//! The child is killed when its handle drops, so an error, a timeout or Ctrl-C in the
//! parent never leaves an operator running.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Static keys the fake AWS accepts (it checks that requests are signed, not the key).
pub const ACCESS_KEY_ID: &str = "AKIAEMULATOREXAMPLE1";
pub const SECRET_ACCESS_KEY: &str = "emulated/secret/access/key/not-a-real-one";
pub const REGION: &str = "us-east-1";

/// A running operator process.
pub struct OperatorChild {
    child: Option<Child>,
    pub pid: u32,
    /// Where `/readyz` answers.
    pub probe_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub started: Instant,
    /// Every line the operator wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// How to start the operator.
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub api_server: &'a str,
    pub aws_endpoint: &'a str,
    pub metrics: bool,
    pub rust_log: &'a str,
    pub extra_args: &'a [&'a str],
    /// Added to the clean environment (e.g. `MALLOC_ARENA_MAX=2` experiments).
    pub extra_env: &'a [(String, String)],
}

// === impl OperatorChild ===

impl OperatorChild {
    /// Starts the binary with a clean environment: only what the fake endpoints need, so
    /// the developer's own AWS profile or kubeconfig can never leak in.
    pub fn spawn(l: &Launch<'_>) -> Result<OperatorChild, String> {
        let probe_addr = free_port()?;
        let metrics_addr = if l.metrics { Some(free_port()?) } else { None };
        let mut cmd = Command::new(l.binary);
        cmd.env_clear()
            .env("AWS_ENDPOINT_URL", l.aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POD_NAME", "ecr-creds-refresher-demo")
            .env("RUST_LOG", l.rust_log)
            .arg("--api-server")
            .arg(l.api_server)
            .arg("--health-probe-bind-address")
            .arg(probe_addr.to_string())
            .arg("--metrics-bind-address")
            .arg(metrics_addr.map_or("0".to_string(), |a| a.to_string()))
            // Short-lived fake tokens refresh every few seconds.
            .args(["--min-refresh-interval", "1s"])
            .args(l.extra_args)
            .envs(l.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", l.binary.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Ok(OperatorChild {
            pid: child.id(),
            child: Some(child),
            probe_addr,
            metrics_addr,
            started,
            log,
        })
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last lines of the operator's log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let from = lines.len().saturating_sub(n);
        lines[from..].join("\n")
    }

    /// Exited already? (`Some(status)` if so.)
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls `/readyz` until it answers 200; fails early if the process dies.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "the operator exited during startup ({status}); its log:\n{}",
                    self.log_tail(20)
                ));
            }
            if let Ok((200, _)) = http_get(self.probe_addr, "/readyz").await {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the operator was not ready within {within:?}; its log:\n{}",
                    self.log_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends SIGTERM (through `kill(1)`: this crate forbids unsafe code) and waits for the
    /// exit status.
    pub async fn terminate(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(sent, Ok(s) if s.success()) {
            return Err(format!("could not send SIGTERM to pid {}", self.pid));
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the operator did not exit within {within:?} of SIGTERM; its log:\n{}",
                    self.log_tail(10)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OperatorChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A plain HTTP/1.0 GET on loopback (no chunked answers to decode): (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| format!("GET {path}: timed out"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` every `every` until it yields a value or `within` passes. A check that
/// costs more (listing 10k objects) waits twice its cost, so polling never takes more than
/// a third of a CPU from the operator being measured.
pub async fn poll<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        let started = Instant::now();
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every.max(started.elapsed() * 2)).await;
    }
}
