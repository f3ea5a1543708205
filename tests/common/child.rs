//! The operator BINARY as a child process, for the tests of what only a process shows:
//! signals, exit codes, several replicas. The launcher is the one `demo` and `bench` use
//! (`emulators::operator`); here it gets the test profile's binary, the operator's
//! namespace and metrics. Each replica can sit behind its own logging reverse proxy
//! ([`Proxy`]): every replica talks to the same emulator, whose log cannot tell them
//! apart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub(crate) use emulators::operator::{free_port, Launch, OperatorChild};

use super::OPERATOR_NAMESPACE;

/// The operator binary of this test profile.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_ecr-creds-refresher");
/// The Lease's name (the operator's default), in [`OPERATOR_NAMESPACE`].
pub(crate) const LEASE: &str = "ecr-creds-refresher";

/// Both emulators; the Kubernetes one with these namespaces (plus `default` and the
/// operator's).
pub(crate) async fn emulators(namespaces: &[&str]) -> (K8sEmulator, AwsEmulator) {
    let mut ns = vec!["default".to_string(), OPERATOR_NAMESPACE.to_string()];
    ns.extend(namespaces.iter().map(|s| s.to_string()));
    let k8s = K8sEmulator::start(EmulatorConfig {
        namespaces: ns,
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the Kubernetes emulator");
    let aws = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .expect("start the AWS emulator");
    (k8s, aws)
}

/// The test binary as replica `name` against `api_server` and `aws`: POD_NAMESPACE is
/// [`OPERATOR_NAMESPACE`], metrics are served, logs at `info`. Add flags, then `spawn`.
pub(crate) fn operator(name: &str, api_server: String, aws: &AwsEmulator) -> Launch {
    Launch::new(BINARY, api_server, aws.url())
        .pod_name(name)
        .pod_namespace(OPERATOR_NAMESPACE)
        .metrics(true)
}

/// The flags of a replica that takes part in leader election.
pub(crate) fn leader_elect_args() -> [&'static str; 3] {
    [
        "--leader-elect",
        "--leader-election-namespace",
        OPERATOR_NAMESPACE,
    ]
}

/// The Lease's current holder ("" when released or absent).
pub(crate) fn lease_holder(k8s: &K8sEmulator) -> String {
    k8s.get("leases", Some(OPERATOR_NAMESPACE), LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}

// --- the logging proxy ---

/// One request a replica sent, as its proxy saw it.
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Bytes,
    pub user_agent: String,
    pub status: u16,
}

impl Logged {
    /// Anything but a read: create, update, patch, delete.
    pub(crate) fn is_write(&self) -> bool {
        self.method != "GET"
    }
    pub(crate) fn is_lease(&self) -> bool {
        self.path.contains("/leases")
    }
}

/// A reverse proxy in front of the emulator that records every request (bodies included)
/// and streams answers back unchanged, watches too.
#[derive(Clone)]
pub(crate) struct Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;
type Upstream = HttpClient<HttpConnector, Full<Bytes>>;

// === impl Proxy ===

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let client: Upstream = HttpClient::builder(TokioExecutor::new()).build_http();
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

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn writes(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_write)
            .collect()
    }
}

async fn forward(
    client: Upstream,
    log: Arc<Mutex<Vec<Logged>>>,
    upstream: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<ProxyBody>, Infallible> {
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
