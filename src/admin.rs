//! The admin HTTP server: liveness, readiness and Prometheus metrics.
//!
//! Two listeners, as controller-runtime operators have them, so that a NetworkPolicy or
//! a Service can expose metrics without exposing probes:
//! - `--health-probe-bind-address` (default `:8081`): `/healthz`, `/readyz`;
//! - `--metrics-bind-address` (default `:8080`, `0` disables): `/metrics`.
//!
//! `/healthz` answers 200 while the process runs: the kubelet restarts us only when the
//! runtime is wedged enough not to answer. `/readyz` answers 200 once every registered
//! component said it is ready (e.g. caches synced) and 503 naming those that are not.
//!
//! The server speaks plain HTTP/1.1 (probes and Prometheus need nothing else), bounds
//! header size, per-connection buffers, header read time and concurrent connections, and
//! on shutdown stops accepting, lets open requests finish for a short grace period, then
//! drops the rest.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A client has this long to send its request headers, on a new connection and between
/// requests on a kept-alive one: probes and scrapers send theirs at once, and an idle
/// connection must not hold a slot (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head (request line and headers) and per-connection buffer, in
/// bytes: a probe or a scrape sends a few hundred. hyper's default (about 400 KiB per
/// connection) let a flood of unterminated headers over the connection budget below
/// take the process past 100 MiB; 8 KiB, hyper's minimum, bounds a full listener to a
/// few MiB. A longer head gets 431 and the connection closes.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Headers a request may carry (hyper's default is 100): a probe sends about five.
const MAX_HEADERS: usize = 32;
/// Connections one listener keeps at most; the cap bounds memory if something floods
/// the port. Each listener (probes, metrics) has its own budget.
const MAX_CONNECTIONS: usize = 256;
/// Connections one peer address may hold: the kubelet needs two (liveness and
/// readiness), a scraper one. A peer at its limit has its oldest connection closed for
/// a new one, so it can starve only itself.
const MAX_PER_PEER: usize = 8;
/// After shutdown, in-flight requests get this long before their connections drop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

// === AdminError ===

/// What went wrong setting up the admin server. Serving errors of single connections
/// are logged, never returned: one bad client must not stop the probes.
#[derive(Debug)]
pub enum AdminError {
    /// A bind address flag could not be read.
    InvalidBindAddress { value: String, reason: String },
    /// The listener could not be opened (port in use, no permission).
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::InvalidBindAddress { value, reason } => write!(
                f,
                "invalid bind address {value:?}: {reason} (use \":PORT\", \"IP:PORT\", \"[IPv6]:PORT\" or \"0\" to disable)"
            ),
            AdminError::Bind { addr, source } => {
                write!(f, "cannot listen on {addr}: {source} (is the port already in use?)")
            }
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Bind { source, .. } => Some(source),
            AdminError::InvalidBindAddress { .. } => None,
        }
    }
}

// === Readiness ===

/// The set of components whose readiness `/readyz` reports. Cheap to clone.
///
/// Register every component before the probe listener starts: with no component
/// registered at all, `/readyz` answers 503, so an early probe never sees a pod ready
/// that has not even started its components.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    components: Arc<Mutex<Components>>,
    next_id: Arc<AtomicU64>,
}

/// Registered components by registration order: name and ready flag.
type Components = BTreeMap<u64, (String, Arc<AtomicBool>)>;

/// One component's readiness flag. Dropping it marks the component not ready (it stays
/// registered), so a component task that dies takes the pod out of rotation.
#[must_use = "dropping a ReadyHandle marks its component not ready"]
pub(crate) struct ReadyHandle {
    name: String,
    ready: Arc<AtomicBool>,
}

impl Readiness {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a component, initially not ready. Names need not be unique, but unique
    /// names make the `/readyz` answer readable.
    pub(crate) fn register(&self, name: &str) -> ReadyHandle {
        let ready = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (name.to_string(), ready.clone()));
        ReadyHandle {
            name: name.to_string(),
            ready,
        }
    }

    /// `Ok` when every registered component is ready (and at least one is registered);
    /// else the names of those that are not.
    pub(crate) fn check(&self) -> Result<(), Vec<String>> {
        let components = self.lock();
        if components.is_empty() {
            return Err(vec!["no component registered yet".to_string()]);
        }
        let not_ready: Vec<String> = components
            .values()
            .filter(|(_, r)| !r.load(Ordering::Acquire))
            .map(|(n, _)| n.clone())
            .collect();
        if not_ready.is_empty() {
            Ok(())
        } else {
            Err(not_ready)
        }
    }

    /// Every component with its state, in registration order (for `/readyz?verbose`).
    pub(crate) fn states(&self) -> Vec<(String, bool)> {
        self.lock()
            .values()
            .map(|(n, r)| (n.clone(), r.load(Ordering::Acquire)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Components> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReadyHandle {
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl Drop for ReadyHandle {
    fn drop(&mut self) {
        self.ready.store(false, Ordering::Release);
    }
}

impl fmt::Debug for ReadyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyHandle")
            .field("name", &self.name)
            .field("ready", &self.is_ready())
            .finish()
    }
}

// === Routes ===

/// What one listener serves. Build with [`Routes::probes`] and/or [`Routes::metrics`];
/// combine them when both flags name the same address.
#[derive(Clone, Default)]
#[must_use]
pub(crate) struct Routes {
    readiness: Option<Readiness>,
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl Routes {
    /// `/healthz` and `/readyz` over `readiness`.
    pub(crate) fn probes(readiness: Readiness) -> Self {
        Self {
            readiness: Some(readiness),
            metrics: None,
        }
    }

    /// `/metrics` rendered by `render`: the operator's registry, or a test's.
    pub(crate) fn metrics_from(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self {
            readiness: None,
            metrics: Some(Arc::new(render)),
        }
    }

    /// Answers one request. Pure apart from reading readiness and metrics.
    pub(crate) fn respond(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let known = match path {
            "/healthz" | "/readyz" => self.readiness.is_some(),
            "/metrics" => self.metrics.is_some(),
            _ => false,
        };
        if !known {
            return text(StatusCode::NOT_FOUND, "not found\n".to_string());
        }
        if method != Method::GET && method != Method::HEAD {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            );
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match (path, &self.readiness, &self.metrics) {
            ("/healthz", Some(_), _) => text(StatusCode::OK, "ok\n".into()),
            ("/readyz", Some(readiness), _) => readyz(readiness, query),
            ("/metrics", _, Some(render)) => {
                let mut resp = Response::new(Full::new(Bytes::from(render())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
                );
                resp
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

/// Kubernetes apiserver style: `ok` when ready; otherwise (or with `?verbose`) one
/// `[+]name ok` / `[-]name not ready` line per component.
fn readyz(readiness: &Readiness, query: Option<&str>) -> Response<Full<Bytes>> {
    let verbose = query
        .map(|q| {
            q.split('&')
                .any(|kv| kv == "verbose" || kv.starts_with("verbose="))
        })
        .unwrap_or(false);
    let result = readiness.check();
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = String::new();
    if verbose || result.is_err() {
        for (name, ready) in readiness.states() {
            if ready {
                body.push_str(&format!("[+]{name} ok\n"));
            } else {
                body.push_str(&format!("[-]{name} not ready\n"));
            }
        }
    }
    match result {
        Ok(()) => body.push_str("ok\n"),
        Err(names) => body.push_str(&format!("readyz check failed: {}\n", names.join(", "))),
    }
    text(status, body)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

// === Server ===

/// A bound, not yet serving, listener. Binding first lets `main` fail fast on a taken
/// port and lets tests bind port 0 and read the address back.
pub(crate) struct Server {
    listener: TcpListener,
}

impl Server {
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(Self { listener })
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `routes` until `shutdown` completes, then drains for a short grace period.
    pub(crate) async fn serve(self, routes: Routes, shutdown: impl Future<Output = ()>) {
        let routes = Arc::new(routes);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = Connections::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(done) = connections.set.join_next_with_id(), if !connections.set.is_empty() => {
                    connections.finished(done);
                }
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "admin server: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    connections.make_room_for(peer.ip());
                    let routes = routes.clone();
                    let mut stop = stop_rx.clone();
                    let handle = connections.set.spawn(async move {
                        serve_connection(stream, routes, &mut stop).await;
                    });
                    connections.open.insert(handle.id(), (peer.ip(), handle));
                }
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::debug!("admin server: dropping connections still open after the grace period");
        }
        connections.set.abort_all();
    }
}

/// The open connections of one listener, in the order they were accepted.
#[derive(Default)]
struct Connections {
    set: JoinSet<()>,
    open: BTreeMap<tokio::task::Id, (IpAddr, tokio::task::AbortHandle)>,
}

impl Connections {
    fn finished(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        self.open.remove(&id);
    }

    /// Closes a connection when `peer` is at its own limit (its oldest), or when the
    /// listener is full (the oldest of the peer holding the most). A flood from a few
    /// addresses so only ever closes the flooder's connections, never a probe's.
    fn make_room_for(&mut self, peer: IpAddr) {
        let of_peer = |ip: IpAddr| self.open.values().filter(|(p, _)| *p == ip).count();
        let victim_peer = if of_peer(peer) >= MAX_PER_PEER {
            Some(peer)
        } else if self.open.len() >= MAX_CONNECTIONS {
            self.open
                .values()
                .map(|(p, _)| *p)
                .max_by_key(|p| of_peer(*p))
        } else {
            None
        };
        let Some(victim_peer) = victim_peer else {
            return;
        };
        // Task ids grow with spawn order: the first match is the oldest.
        let victim = self
            .open
            .iter()
            .find(|(_, (p, _))| *p == victim_peer)
            .map(|(id, _)| *id);
        if let Some((_, handle)) = victim.and_then(|id| self.open.remove(&id)) {
            tracing::debug!(peer = %victim_peer, "admin server: connection budget full; closing the oldest of the busiest peer");
            handle.abort();
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    routes: Arc<Routes>,
    stop: &mut watch::Receiver<bool>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let routes = routes.clone();
        async move {
            let resp = routes.respond(req.method(), req.uri().path(), req.uri().query());
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "admin server: connection ended with an error");
    }
}

/// Resolves once the server signals shutdown (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod server_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn readiness_waits_for_every_component_and_names_the_missing_ones() {
        let r = Readiness::new();
        assert!(
            r.check().is_err(),
            "no component registered must not be ready"
        );
        let caches = r.register("caches");
        let aws = r.register("aws");
        assert_eq!(r.check(), Err(vec!["caches".into(), "aws".into()]));
        caches.set_ready(true);
        assert_eq!(r.check(), Err(vec!["aws".into()]));
        aws.set_ready(true);
        assert_eq!(r.check(), Ok(()));
        caches.set_ready(false);
        assert_eq!(r.check(), Err(vec!["caches".into()]));
    }

    #[test]
    fn dropping_a_ready_handle_marks_its_component_not_ready() {
        let r = Readiness::new();
        let h = r.register("watcher");
        h.set_ready(true);
        assert!(r.check().is_ok());
        drop(h);
        assert_eq!(r.check(), Err(vec!["watcher".into()]));
    }

    #[tokio::test]
    async fn readyz_503_body_names_components_not_ready() {
        let r = Readiness::new();
        let a = r.register("caches");
        let _b = r.register("leader-election");
        a.set_ready(true);
        let routes = Routes::probes(r);
        let resp = routes.respond(&Method::GET, "/readyz", None);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body(resp).await;
        assert!(text.contains("[-]leader-election not ready"), "{text}");
        assert!(text.contains("[+]caches ok"), "{text}");
        assert!(
            text.contains("readyz check failed: leader-election"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn routes_only_serve_what_the_listener_was_given() {
        let probes = Routes::probes(Readiness::new());
        assert_eq!(
            probes.respond(&Method::GET, "/metrics", None).status(),
            StatusCode::NOT_FOUND
        );
        let metrics = Routes::metrics_from(|| "x 1\n".into());
        assert_eq!(
            metrics.respond(&Method::GET, "/healthz", None).status(),
            StatusCode::NOT_FOUND
        );
        let resp = metrics.respond(&Method::POST, "/metrics", None);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
    }
}
