//! Helpers for the production tests: the operator BINARY as a child process, each instance
//! behind its own logging reverse proxy so a test can tell which instance sent which API
//! request (every instance talks to the same emulator, whose log cannot tell them apart).
//!
//! Use from a test file with `mod support_prod;`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

pub const BINARY: &str = env!("CARGO_BIN_EXE_ecr-creds-refresher");
/// The operator's namespace: the Lease lives here.
pub const OPERATOR_NS: &str = "ecr-creds-refresher";
pub const LEASE: &str = "ecr-creds-refresher";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const POLL: Duration = Duration::from_millis(25);

pub fn registry() -> String {
    format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com")
}

/// A port free right now (the OS hands out ports round-robin, so a race is unlikely).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Both emulators; the Kubernetes one with these namespaces (plus `default` and the
/// operator's).
pub async fn emulators(namespaces: &[&str]) -> (K8sEmulator, AwsEmulator) {
    let mut ns = vec!["default".to_string(), OPERATOR_NS.to_string()];
    ns.extend(namespaces.iter().map(|s| s.to_string()));
    let k8s = K8sEmulator::start(EmulatorConfig {
        namespaces: ns,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let aws = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    (k8s, aws)
}

/// Creates or replaces an ECRPullSecret (straight into the store: watchers see it).
pub fn apply_cr(k8s: &K8sEmulator, name: &str, spec: Value) {
    let mut obj = k8s.get("ecrpullsecrets", None, name).unwrap_or_else(|| {
        json!({"apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret",
               "metadata": {"name": name}})
    });
    obj["spec"] = spec;
    k8s.apply("ecrpullsecrets", obj).unwrap();
}

pub fn apply_namespace(k8s: &K8sEmulator, name: &str) {
    k8s.apply("namespaces", json!({"metadata": {"name": name}}))
        .unwrap();
}

/// Whether the CR reports Ready=True for its current generation.
pub fn is_ready(cr: &Value) -> bool {
    let ready = cr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && cr["status"]["observedGeneration"] == cr["metadata"]["generation"]
}

/// Polls `f` until it returns `Some`, panicking with `what` after `within`.
pub async fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The Lease's current holder ("" when released or absent).
pub fn lease_holder(k8s: &K8sEmulator) -> String {
    k8s.get("leases", Some(OPERATOR_NS), LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}

// --- the logging proxy ---

/// One request an instance sent, as its proxy saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Bytes,
    pub user_agent: String,
    pub status: u16,
}

impl Logged {
    /// Anything but a read: create, update, patch, delete.
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
    pub fn is_lease(&self) -> bool {
        self.path.contains("/leases")
    }
}

/// A reverse proxy in front of the emulator that records every request (bodies included)
/// and streams answers back unchanged, watches too.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let client: HttpClient<_, Full<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let shared = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let client = client.clone();
                let log = shared.clone();
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let client = client.clone();
                    let log = log.clone();
                    async move { forward(client, log, upstream, req).await }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Proxy { addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn writes(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_write)
            .collect()
    }
}

async fn forward(
    client: HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    log: Arc<Mutex<Vec<Logged>>>,
    upstream: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<ProxyBody>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{upstream}{pq}"));
    for (k, v) in parts.headers.iter() {
        if k != http::header::HOST {
            out = out.header(k, v);
        }
    }
    let out = out.body(Full::new(body.clone())).unwrap();
    let mut entry = Logged {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        body,
        user_agent: parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        status: 502,
    };
    let resp = match client.request(out).await {
        Ok(resp) => {
            entry.status = resp.status().as_u16();
            resp.map(|b| b.boxed())
        }
        Err(_) => hyper::Response::builder()
            .status(502)
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .unwrap(),
    };
    log.lock().unwrap().push(entry);
    Ok(resp)
}

// --- the operator binary ---

/// How to start one instance.
pub struct Spawn<'a> {
    pub name: &'a str,
    pub api_server: String,
    pub aws_url: String,
    pub leader_elect: bool,
    pub extra_args: Vec<String>,
    pub extra_env: Vec<(String, String)>,
}

impl<'a> Spawn<'a> {
    pub fn new(name: &'a str, api_server: String, aws: &AwsEmulator) -> Self {
        Spawn {
            name,
            api_server,
            aws_url: aws.url(),
            leader_elect: false,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }
}

/// A running operator binary. Dropping it kills the process.
pub struct Instance {
    pub name: String,
    pub child: Child,
    pub probe: SocketAddr,
    pub metrics: SocketAddr,
    pub log_path: PathBuf,
}

/// The command for one instance: a clean environment (no host AWS settings leak in),
/// fake static keys, the AWS emulator as every AWS endpoint.
pub fn command(s: &Spawn<'_>, probe: SocketAddr, metrics: SocketAddr) -> Command {
    command_of(BINARY, s, probe, metrics)
}

/// [`command`] for another build of the operator (e.g. the release binary).
pub fn command_of(program: &str, s: &Spawn<'_>, probe: SocketAddr, metrics: SocketAddr) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .args(["--api-server", &s.api_server])
        .args(["--health-probe-bind-address", &probe.to_string()])
        .args(["--metrics-bind-address", &metrics.to_string()])
        .args(["--min-refresh-interval", "1s"])
        .env("POD_NAME", s.name)
        .env("POD_NAMESPACE", OPERATOR_NS)
        .env("AWS_ENDPOINT_URL", &s.aws_url)
        .env("AWS_ACCESS_KEY_ID", "AKIDPRODUCTIONTEST")
        .env("AWS_SECRET_ACCESS_KEY", "production-test-secret-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", REGION)
        .env("RUST_LOG", "info");
    if s.leader_elect {
        cmd.args(["--leader-elect", "--leader-election-namespace", OPERATOR_NS]);
    }
    cmd.args(&s.extra_args);
    for (k, v) in &s.extra_env {
        cmd.env(k, v);
    }
    cmd
}

pub fn log_path(name: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("ecr-creds-refresher-{name}-{port}.log"))
}

impl Instance {
    pub fn spawn(s: Spawn<'_>) -> Instance {
        Instance::spawn_of(BINARY, s)
    }

    /// Runs `program` (another build of the operator) instead of the test profile's.
    pub fn spawn_of(program: &str, s: Spawn<'_>) -> Instance {
        let probe: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log_path = log_path(s.name, probe.port());
        let log = std::fs::File::create(&log_path).unwrap();
        let child = command_of(program, &s, probe, metrics)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Instance {
            name: s.name.to_string(),
            child,
            probe,
            metrics,
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, INT) with kill(1): no unsafe libc in tests.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to end (polling), `None` at timeout.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What the process logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A plain HTTP GET on loopback: (status, content type, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, ct, String::from_utf8_lossy(&body).into_owned()))
}
