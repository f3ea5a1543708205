//! The HTTP side: hyper (http1 and h2 through hyper-util's auto builder), optional TLS,
//! bearer-token auth, fault injection, the request log, the resource API and the
//! `/_emulator/` control endpoints. Connections can be cut and the listener re-bound on the
//! same port (restart) while the state lives on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::admission::{Admit, Attributes as AdmissionAttributes, Denial, PolicySet, Refusal};
use super::faults::Faults;
use super::lag::LagControl;
use super::rbac::{Attributes, RbacPolicy};
use super::requests::{RequestLog, RequestRecord};
use super::route::{self, Route};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::store::{Deleted, ListQuery, PatchType, Preconditions, Store, WriteTarget};
use super::watch::{self as watchstream, WatchFilter, WatchTiming};

pub type Body = BoxBody<Bytes, Infallible>;

/// The username of requests when no user is configured: a member of system:masters.
pub const ADMIN: &str = "system:admin";

/// The user a request asks to run as (`Impersonate-User`): a test's person at the
/// keyboard beside the operator's identity. The real server checks `impersonate` RBAC;
/// here the header is trusted, and the RBAC policy (the operator's role) does not apply.
fn impersonated(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty())
        .map(str::to_string)
}

/// With `K8S_EMULATOR_DENIALS_LOG=<path>` set, every denial of every emulator in the process
/// is appended there as a JSON line: how a whole test suite is checked for denials it did
/// not expect. Best effort: a test tool must not fail a request over its own log.
fn log_denial(d: &Denial) {
    append_json_line("K8S_EMULATOR_DENIALS_LOG", d);
}

/// With `K8S_EMULATOR_ADMISSION_CASES=<path>` set, every write admission evaluated is
/// appended there as a JSON line ([`AdmissionCase`]): the cases a second CEL evaluator
/// replays to check this one (tests/cel/second_evaluator.py).
fn log_case(
    set: &PolicySet,
    a: &AdmissionAttributes<'_>,
    user: &str,
    verdict: &Result<(), Box<Refusal>>,
) {
    if std::env::var_os("K8S_EMULATOR_ADMISSION_CASES").is_some() {
        append_json_line("K8S_EMULATOR_ADMISSION_CASES", &set.case(a, user, verdict));
    }
}

/// Appends `value` as one JSON line to the file the environment variable `var` names.
fn append_json_line(var: &str, value: &impl serde::Serialize) {
    use std::io::Write;
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    let Ok(mut line) = serde_json::to_vec(value) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(&line);
    }
}

/// Admission for the writes of one API request.
struct RequestAdmission<'a> {
    shared: &'a Shared,
    user: String,
    verb: &'a str,
}

impl Admit for RequestAdmission<'_> {
    fn admit(&self, a: &AdmissionAttributes<'_>) -> Result<(), ApiError> {
        let set = self
            .shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(set) = set else { return Ok(()) };
        let verdict = set.check(a, &self.user);
        log_case(&set, a, &self.user, &verdict);
        verdict.map_err(|refusal| {
            let Refusal {
                policy,
                binding,
                error: e,
            } = *refusal;
            let denial = Denial {
                policy,
                binding,
                user: self.user.clone(),
                verb: self.verb.to_string(),
                resource: a.kind.qualified(),
                namespace: a.namespace.to_string(),
                name: a.name.to_string(),
                message: e.message.clone(),
            };
            log_denial(&denial);
            self.shared
                .denials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(denial);
            e
        })
    }
}

/// Settings the server reads on every request.
pub struct ServerSettings {
    pub bookmark_interval: Option<Duration>,
    pub watch_timeout: Duration,
    pub restart_refuse: Duration,
}

struct ListenerCtl {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Everything the connections share.
pub struct Shared {
    pub store: Arc<Store>,
    pub faults: Faults,
    /// How watch events trail their writes.
    pub lag: Arc<LagControl>,
    pub log: RequestLog,
    pub token: RwLock<Option<String>>,
    pub rbac: RwLock<Option<RbacPolicy>>,
    /// The username API requests run as (see [`Shared::username`]).
    pub user: RwLock<Option<String>>,
    /// Admission policies in force; None: no admission control.
    pub admission: RwLock<Option<Arc<PolicySet>>>,
    /// Every write a policy denied, oldest first.
    pub denials: Mutex<Vec<Denial>>,
    pub expired_as_http_status: AtomicBool,
    pub settings: ServerSettings,
    pub(super) drops: watch::Sender<u64>,
    cuts: watch::Sender<u64>,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: tokio::sync::Mutex<ListenerCtl>,
    /// Restarts asked for over HTTP run on a worker task: the request's own connection is
    /// among those cut.
    restarts: tokio::sync::mpsc::UnboundedSender<Duration>,
    /// Connections being served now (soak tests check the client does not leak them).
    pub open_connections: std::sync::atomic::AtomicUsize,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

// === impl Shared ===

impl Shared {
    /// Binds and starts accepting; returns the bound address.
    pub async fn start(
        store: Arc<Store>,
        token: Option<String>,
        expired_as_http_status: bool,
        settings: ServerSettings,
        tls: Option<Arc<rustls::ServerConfig>>,
        log_capacity: usize,
        addr: SocketAddr,
    ) -> std::io::Result<Arc<Shared>> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let (restarts, mut restart_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store,
            faults: Faults::default(),
            lag: Arc::new(LagControl::default()),
            log: RequestLog::new(log_capacity),
            token: RwLock::new(token),
            rbac: RwLock::new(None),
            user: RwLock::new(None),
            admission: RwLock::new(None),
            denials: Mutex::new(Vec::new()),
            expired_as_http_status: AtomicBool::new(expired_as_http_status),
            settings,
            drops: watch::channel(0).0,
            cuts: watch::channel(0).0,
            tls,
            listener: tokio::sync::Mutex::new(ListenerCtl {
                addr,
                stop: None,
                task: None,
            }),
            restarts,
            open_connections: std::sync::atomic::AtomicUsize::new(0),
        });
        shared.spawn_accept(listener).await;
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(refuse) = restart_rx.recv().await {
                let Some(s) = weak.upgrade() else { return };
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = s.restart(refuse).await;
            }
        });
        Ok(shared)
    }

    async fn spawn_accept(self: &Arc<Self>, listener: TcpListener) {
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(self.clone(), listener, stop_rx));
        let mut ctl = self.listener.lock().await;
        ctl.stop = Some(stop_tx);
        ctl.task = Some(task);
    }

    pub async fn addr(&self) -> SocketAddr {
        self.listener.lock().await.addr
    }

    /// Ends every open watch stream now (clients see a clean end of stream).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|g| *g += 1);
    }

    fn cut_connections(&self) {
        self.cuts.send_modify(|g| *g += 1);
    }

    async fn stop_listening(&self) {
        let (stop, task) = {
            let mut ctl = self.listener.lock().await;
            (ctl.stop.take(), ctl.task.take())
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Stop listening, cut every connection and watch, refuse connections for `refuse`,
    /// then listen again on the same port. The state is kept.
    pub async fn restart(self: &Arc<Self>, refuse: Duration) -> std::io::Result<()> {
        self.stop_listening().await;
        self.drop_watches();
        self.cut_connections();
        tokio::time::sleep(refuse).await;
        let addr = self.addr().await;
        let mut tries = 0;
        let listener = loop {
            match bind(addr) {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.spawn_accept(listener).await;
        Ok(())
    }

    /// Queues a restart for the worker task (used by the HTTP control endpoint, whose own
    /// connection is among those cut).
    pub fn request_restart(&self, refuse: Duration) {
        let _ = self.restarts.send(refuse);
    }

    pub async fn shutdown(&self) {
        self.stop_listening().await;
        self.drop_watches();
        self.cut_connections();
    }

    fn authorize(&self, r: &RequestRecord) -> Result<(), ApiError> {
        let policy = self.rbac.read().unwrap_or_else(|p| p.into_inner());
        let Some(policy) = policy.as_ref() else {
            return Ok(());
        };
        policy.check(&Attributes {
            verb: &r.verb,
            group: &r.group,
            resource: &r.resource,
            subresource: &r.subresource,
            namespace: r.namespace.as_deref(),
            name: r.name.as_deref(),
        })
    }

    /// Who API requests are: the RBAC policy's user while RBAC is enforced, else the
    /// configured user, else the cluster admin.
    pub fn username(&self) -> String {
        let rbac = self.rbac.read().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = rbac
            .as_ref()
            .map(|p| p.user.as_str())
            .filter(|u| !u.is_empty())
        {
            return u.to_string();
        }
        self.user
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| ADMIN.to_string())
    }

    fn check_token(&self, req: &Request<Incoming>) -> bool {
        let want = self.token.read().unwrap_or_else(|p| p.into_inner());
        let Some(want) = want.as_deref() else {
            return true;
        };
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|got| got.trim() == want)
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(shared.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    shared.open_connections.fetch_add(1, Ordering::SeqCst);
    let _open = OpenConnection(shared.clone());
    let mut cut = shared.cuts.subscribe();
    cut.mark_unchanged();
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| handle(svc_shared.clone(), req));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    match &shared.tls {
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            let tls = tokio::select! {
                s = acceptor.accept(stream) => match s { Ok(s) => s, Err(_) => return },
                _ = cut.changed() => return,
            };
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = cut.changed() => {}
            }
        }
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = cut.changed() => {}
            }
        }
    }
}

pub(super) fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(super) fn error_response(e: &ApiError, retry_after: Option<u32>) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_value());
    if let Some(s) = retry_after {
        if let Ok(v) = header::HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path.starts_with("/_emulator/") {
        return Ok(super::admin::admin(&shared, req, &path).await);
    }
    let method = req.method().as_str().to_string();
    let mut record = RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        verb: String::new(),
        group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: None,
        name: None,
        code: 0,
    };
    let params = route::query_pairs(&query);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let is_watch = matches!(param("watch"), Some("1" | "true"));
    let route = route::parse(&path, shared.store.kinds());
    if let Ok(r) = &route {
        let spec = shared.store.kinds().get(r.kind);
        record.verb = route::verb(&method, r, is_watch).to_string();
        record.group = spec.group.to_string();
        record.resource = spec.plural.to_string();
        record.subresource = r.subresource.clone().unwrap_or_default();
        record.namespace = r.namespace.clone();
        record.name = r.name.clone();
    }
    let response = if !shared.check_token(&req) {
        error_response(&ApiError::unauthorized(), None)
    } else {
        let decision = shared.faults.decide(&record.verb, &record.resource);
        if !decision.latency.is_zero() {
            tokio::time::sleep(decision.latency).await;
        }
        let response = match decision.error {
            Some((e, retry_after)) => error_response(&e, retry_after),
            None => match route {
                Ok(r) => match impersonated(req.headers())
                    .map_or_else(|| shared.authorize(&record), |_| Ok(()))
                {
                    Ok(()) => serve_resource(&shared, req, r, &record.verb, &params).await,
                    Err(e) => error_response(&e, None),
                },
                Err(e) => non_resource(&path, &shared).unwrap_or_else(|| error_response(&e, None)),
            },
        };
        if !decision.answer_delay.is_zero() {
            tokio::time::sleep(decision.answer_delay).await;
        }
        response
    };
    record.code = response.status().as_u16();
    shared.log.push(record);
    Ok(response)
}

fn non_resource(path: &str, shared: &Shared) -> Option<Response<Body>> {
    if let Some(doc) = super::discovery::document(path, shared.store.kinds()) {
        return Some(json_response(200, &doc));
    }
    match path {
        "/healthz" | "/livez" | "/readyz" => Some(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Full::new(Bytes::from_static(b"ok")).boxed())
                .ok()?,
        ),
        "/version" => Some(json_response(
            200,
            &json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0-emulator", "platform": "linux/amd64"}),
        )),
        _ => None,
    }
}

pub(super) async fn read_json(req: Request<Incoming>) -> Result<(Option<String>, Value), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok((ct, Value::Null));
    }
    // Server-side apply bodies are YAML (JSON is YAML too).
    let v = if ct.as_deref() == Some("application/apply-patch+yaml") {
        serde_yaml::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))?
    };
    Ok((ct, v))
}

async fn serve_resource(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    r: Route,
    verb: &str,
    params: &[(String, String)],
) -> Response<Body> {
    match serve_resource_inner(shared, req, r, verb, params).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, None),
    }
}

async fn serve_resource_inner(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    r: Route,
    verb: &str,
    params: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let store = &shared.store;
    let spec = *store.kinds().get(r.kind);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ns = r.namespace.as_deref();
    let gate = RequestAdmission {
        shared,
        user: impersonated(req.headers()).unwrap_or_else(|| shared.username()),
        verb,
    };
    let admit: Option<&dyn Admit> = Some(&gate);
    let target = if r.subresource.is_some() {
        WriteTarget::Status
    } else {
        WriteTarget::Main
    };
    match verb {
        "get" => {
            let name = r.name.as_deref().unwrap_or("");
            Ok(json_response(200, &store.get(r.kind, ns, name)?))
        }
        "list" => {
            let q = ListQuery {
                labels: LabelSelector::parse(param("labelSelector").unwrap_or(""))?,
                fields: FieldSelector::parse(param("fieldSelector").unwrap_or(""))?,
                limit: param("limit").and_then(|l| l.parse().ok()),
                continue_token: param("continue")
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            };
            Ok(json_response(200, &store.list(r.kind, ns, &q)?))
        }
        "watch" => {
            let filter = WatchFilter {
                kind: r.kind,
                namespace: r.namespace.clone(),
                labels: LabelSelector::parse(param("labelSelector").unwrap_or(""))?,
                fields: FieldSelector::parse(param("fieldSelector").unwrap_or(""))?,
            };
            // timeoutSeconds=0 means "no timeout": the server's own default applies.
            let timeout = param("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| *t > 0)
                .map(Duration::from_secs)
                .unwrap_or(shared.settings.watch_timeout);
            let bookmarks = matches!(param("allowWatchBookmarks"), Some("true" | "1"));
            let send_initial = matches!(param("sendInitialEvents"), Some("true" | "1"));
            if send_initial && !bookmarks {
                return Err(ApiError::invalid_options(
                    "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
            let timing = WatchTiming {
                bookmarks: if bookmarks {
                    shared.settings.bookmark_interval
                } else {
                    None
                },
                timeout,
                initial_events_end: send_initial,
            };
            // Streaming list: the current state first, whatever resourceVersion says.
            let rv = if send_initial {
                "0"
            } else {
                param("resourceVersion").unwrap_or("")
            };
            let drops = shared.drops.subscribe();
            let body = match store.watch(r.kind, ns, rv) {
                Ok(start) => watchstream::spawn_watch(
                    spec,
                    filter,
                    start,
                    timing,
                    drops,
                    shared.lag.clone(),
                    None,
                ),
                Err(e)
                    if e.code == 410 && !shared.expired_as_http_status.load(Ordering::Relaxed) =>
                {
                    // The real server answers 200 and sends the 410 as an ERROR event, then closes.
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    let _ = tx.try_send(watchstream::error_event(&e));
                    watchstream::ChannelBody::new(rx)
                }
                Err(e) => return Err(e),
            };
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.boxed())
                .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
        }
        "create" => {
            if spec.namespaced && ns.is_none() {
                // Only list and watch are served across namespaces.
                return Err(ApiError::method_not_allowed("POST"));
            }
            let (_, body) = read_json(req).await?;
            let created = store.create(r.kind, ns, body, target, admit)?;
            Ok(json_response(201, &created))
        }
        "update" => {
            let name = r.name.clone().unwrap_or_default();
            let (_, body) = read_json(req).await?;
            Ok(json_response(
                200,
                &store.replace(r.kind, ns, &name, body, target, admit)?,
            ))
        }
        "patch" => {
            let name = r.name.clone().unwrap_or_default();
            let (ct, body) = read_json(req).await?;
            let ct = ct.unwrap_or_default();
            let ptype = match ct.as_str() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            if ptype == PatchType::Apply {
                if param("fieldManager").is_none_or(str::is_empty) {
                    return Err(ApiError::invalid_options(
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    ));
                }
                if body.get("apiVersion").is_none() || body.get("kind").is_none() {
                    return Err(ApiError::bad_request("invalid object type: /, Kind="));
                }
                if store.get(r.kind, ns, &name).is_err() && target == WriteTarget::Main {
                    // Apply creates what does not exist yet.
                    let mut obj = body;
                    if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                        m.entry("name")
                            .or_insert_with(|| Value::String(name.clone()));
                    }
                    return Ok(json_response(
                        201,
                        &store.create(r.kind, ns, obj, target, admit)?,
                    ));
                }
            }
            Ok(json_response(
                200,
                &store.patch(r.kind, ns, &name, (ptype, &body), target, admit)?,
            ))
        }
        "delete" => {
            let name = r.name.clone().unwrap_or_default();
            let (_, body) = read_json(req).await?;
            let precondition = |field: &str| {
                body.pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let preconditions = Preconditions {
                uid: precondition("uid"),
                resource_version: precondition("resourceVersion"),
            };
            match store.delete(r.kind, ns, &name, &preconditions, admit)? {
                Deleted::Pending(obj) => Ok(json_response(200, &obj)),
                Deleted::Gone(obj) if spec.custom => Ok(json_response(200, &obj)),
                Deleted::Gone(obj) => {
                    let uid = obj
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    Ok(json_response(
                        200,
                        &status::delete_success(&spec, &name, uid),
                    ))
                }
            }
        }
        _ => Err(ApiError::method_not_allowed(req.method().as_str())),
    }
}
