//! A Kubernetes API server emulator: the test oracle for the operator's Kubernetes client.
//!
//! It serves, in memory, namespaces, secrets, serviceaccounts, events (core v1 and
//! events.k8s.io/v1), leases and the cluster-scoped `ecrpullsecrets.ecr.creds.dev` custom
//! resource (with a status subresource), with the real server's semantics for what the
//! operator does: one global resourceVersion counter, optimistic concurrency, merge / JSON /
//! strategic merge patches, status subresource, generation, finalizers, label and field
//! selectors, paginated lists (continue tokens, remainingItemCount), watches with history
//! replay, bookmarks, `sendInitialEvents`, 410 Expired in both forms, and real `Status` error
//! bodies. Kinds are a table (`kinds`): a custom resource is a row, and registering a CRD's
//! YAML ([`EmulatorConfig::crds`], by default the repository's `crd.yaml`) makes its
//! structural schema prune, default and validate objects (`schema`), its
//! `x-kubernetes-validations` CEL rules included (`self`, `oldSelf`, Go-syntax `duration()`).
//!
//! Validation the operator can trip over is the real server's (`validate`): DNS-1123 names,
//! label and annotation keys, owner references, Secret data and `kubernetes.io/dockerconfigjson`
//! payloads, immutable Secret type, Event consistency (core/v1 and events.k8s.io/v1), Lease
//! MicroTime with exactly six fractional digits. Two controller-manager duties are emulated
//! synchronously: the `default` ServiceAccount in new namespaces, and ownerReference garbage
//! collection (an owner gone, or present with another uid, deletes the dependent).
//! Server-side apply is accepted (YAML body, `fieldManager` required, creates when absent)
//! with merge-patch semantics: no field ownership or apply conflicts.
//!
//! Admission: ValidatingAdmissionPolicies and their bindings (`admission`, CEL through the
//! `cel` crate, `cel`) are enforced on every API write, by default the repository's
//! `deploy/admission-policy.yaml` ([`EmulatorConfig::admission_policies`]). Requests run as
//! [`EmulatorConfig::user`], by default the operator's ServiceAccount, so every test runs the
//! operator under the policy it ships; one request may carry `Impersonate-User: NAME` to run
//! as NAME instead (a person editing a CR while the operator runs), without the RBAC policy,
//! which models the operator's role only. A denial answers like kube-apiserver and is recorded
//! ([`K8sEmulator::admission_denials`]; with `K8S_EMULATOR_DENIALS_LOG=<path>` also appended
//! to that file as JSON lines, to check a whole test suite; with
//! `K8S_EMULATOR_ADMISSION_CASES=<path>` every evaluated write is appended there, inputs and
//! verdict (`AdmissionCase`), for a second CEL evaluator to replay). Other admission
//! plugins are not emulated, except NamespaceLifecycle.
//!
//! Known differences from a real server, so nobody mistakes them for the oracle's word:
//! one history window for all kinds (the real watch cache is per resource); continue tokens
//! page through a snapshot rebuilt from that window; lists ignore `resourceVersion`/`resourceVersionMatch`; no `managedFields`; server-side
//! apply merges without field ownership; DELETE's `propagationPolicy` is ignored (background);
//! CEL runs without a cost budget and without Kubernetes' own CEL libraries (quantity, url,
//! ip, authorizer...), and sees untyped JSON (except Secret data, bytes as there); admission
//! policies' `paramKind`, object/namespace selectors and audit annotations are refused, and
//! their `namespaceObject` is null; no Table output; `as=PartialObjectMetadata` shapes
//! single-object answers (gets and writes), not lists or watches.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use emulators::k8s::{EmulatorConfig, K8sEmulator};
//! let emu = K8sEmulator::start(EmulatorConfig::default()).await?;
//! emu.apply("secrets", serde_json::json!({"metadata": {"name": "s", "namespace": "default"}}))
//!     .expect("valid secret");
//! let url = emu.url(); // http://127.0.0.1:PORT
//! # let _ = url; emu.shutdown().await; Ok(()) }
//! ```
//!
//! Discovery (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`, with short names),
//! `/version` and `/healthz` are served, so `kubectl get/create/apply/patch/delete/-w` work
//! against it (kubectl sends bearer tokens only over https: use TLS when a token is set).
//! Table output (`as=Table`) is not: kubectl falls back to NAME/AGE columns.
//!
//! In-process helpers for tests: [`K8sEmulator::apply`], [`K8sEmulator::get`],
//! [`K8sEmulator::list`], [`K8sEmulator::delete`] (watchers see these changes),
//! [`K8sEmulator::wait_for`] (event-driven, fine under paused time) and
//! [`K8sEmulator::changes_since`] (what was written after a resourceVersion).
//!
//! Test controls, on the handle and over HTTP (`/_emulator/...`, never authenticated):
//! - `GET|DELETE /_emulator/requests`, `GET /_emulator/rbac-used` (every verb/resource/scope used), `GET /_emulator/counters`:
//!   the request log ([`RequestRecord`]) with RBAC verb classification.
//! - `GET|POST|DELETE /_emulator/faults` (JSON [`FaultConfig`]): errors with Retry-After on
//!   every Nth or a seeded share of requests, and latency.
//! - `POST /_emulator/drop-watches`, `POST /_emulator/restart` (`{"refuse_ms": N}`),
//!   `POST /_emulator/compact`, `POST /_emulator/history` (`{"size": N}`),
//!   `POST /_emulator/token` (`{"token": "..."}` or `{"token": null}`),
//!   `POST /_emulator/rbac` (JSON [`RbacPolicy`]; `DELETE` turns enforcement off),
//!   `GET /_emulator/admission` (`{"enabled": bool, "user": "...", "denials": [...]}`, each a
//!   [`Denial`]),
//!   `POST /_emulator/admission` (`{"policies": ["<YAML>", ...]}`; `DELETE` turns it off),
//!   `POST /_emulator/user` (`{"user": "..."}`, or null for the cluster admin),
//!   `POST /_emulator/expired-mode` (`{"http_status": true}` answers a too-old watch with
//!   HTTP 410 instead of an ERROR event), `GET /_emulator/state` (current resourceVersion).

mod admin;
mod admission;
mod answer_form;
mod body;
mod cel;
mod counted;
mod discovery;
mod dispatch;
mod faults;
mod kinds;
mod lag;
mod patch;
pub mod rbac;
mod request_admission;
mod requests;
mod resources;
mod route;
mod schema;
mod selector;
mod server;
mod server_state;
mod status;
mod store;
mod tls;
mod validate;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

pub use admission::Denial;
use admission::PolicySet;
pub use faults::{FaultConfig, Faults};
pub use kinds::{KindSpec, DEFAULT_KINDS};
pub use lag::WatchLag;
pub use rbac::{PolicyRule, RbacPolicy};
pub use requests::{RbacUse, RequestRecord};
pub use status::ApiError;

use server_state::{ServerSettings, Shared};
use store::Store;

/// The operator's CRD as shipped, so the emulator enforces exactly its schema.
pub const REPO_CRD: &str = include_str!("../../../crd.yaml");

pub use admission::REPO_ADMISSION_POLICY;

/// The operator's identity in a cluster, and the emulator's default user.
pub const OPERATOR_USER: &str = "system:serviceaccount:ecr-creds-refresher:ecr-creds-refresher";

/// How to start an emulator. `Default` is what tests usually want.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port 0 picks a free one.
    pub bind: SocketAddr,
    /// Required bearer token; `None` accepts every request.
    pub token: Option<String>,
    /// The username API requests run as, for admission policies: by default the operator's
    /// ServiceAccount ([`OPERATOR_USER`]), so every test runs the operator under the shipped
    /// policy. `None`: the cluster admin, `system:admin`. While RBAC is enforced, its
    /// policy's `user` wins. In-process helpers ([`K8sEmulator::apply`], ...) are the
    /// cluster admin and bypass admission, as they bypass RBAC.
    pub user: Option<String>,
    /// ValidatingAdmissionPolicy (+ Binding) YAML texts enforced on API writes (`admission`).
    /// Default: the repository's `deploy/admission-policy.yaml`; empty: no admission control.
    pub admission_policies: Vec<String>,
    /// Serve HTTPS with a freshly generated CA (see [`K8sEmulator::ca_pem`]).
    pub tls: bool,
    /// Events kept for watch resume and continue tokens; older resourceVersions get 410.
    pub history_size: usize,
    /// Bookmark period for watches that allow bookmarks; `None` never sends any.
    pub bookmark_interval: Option<Duration>,
    /// Server-side watch timeout when the client sends no timeoutSeconds.
    pub watch_timeout: Duration,
    /// Answer a too-old watch resourceVersion with HTTP 410 instead of a 200 stream
    /// holding one ERROR event (the real server does both, depending on the path taken).
    pub expired_as_http_status: bool,
    /// Create a `default` ServiceAccount in every new namespace, as the controller-manager does.
    pub auto_default_service_account: bool,
    /// Delete dependents whose owners (ownerReferences, matched by uid) are gone, as the
    /// controller-manager's garbage collector does (synchronously here).
    pub garbage_collection: bool,
    /// Namespaces that exist at start.
    pub namespaces: Vec<String>,
    /// The kinds served, before `crds` add theirs ([`DEFAULT_KINDS`]).
    pub kinds: Vec<KindSpec>,
    /// CustomResourceDefinition YAML documents: their schemas prune, default and validate
    /// custom resources like the real server. Default: the repository's `crd.yaml`.
    pub crds: Vec<String>,
    /// How long a restart refuses connections.
    pub restart_refuse: Duration,
    /// Requests kept in the log ([`K8sEmulator::requests`]); the oldest go first. At least 1.
    pub request_log_capacity: usize,
    /// How watch events trail their writes (default: not at all).
    pub watch_lag: WatchLag,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            user: Some(OPERATOR_USER.to_string()),
            admission_policies: vec![REPO_ADMISSION_POLICY.to_string()],
            tls: false,
            history_size: 1000,
            bookmark_interval: Some(Duration::from_secs(1)),
            watch_timeout: Duration::from_secs(1800),
            expired_as_http_status: false,
            auto_default_service_account: true,
            garbage_collection: true,
            namespaces: vec!["default".into(), "kube-system".into(), "kube-public".into()],
            kinds: DEFAULT_KINDS.to_vec(),
            crds: vec![REPO_CRD.to_string()],
            restart_refuse: Duration::from_millis(200),
            request_log_capacity: 200_000,
            watch_lag: WatchLag::default(),
        }
    }
}

/// One committed change, as [`K8sEmulator::changes_since`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The resourceVersion the write committed at.
    pub resource_version: u64,
    /// ADDED, MODIFIED or DELETED.
    pub event: &'static str,
    /// "secrets", "ecrpullsecrets.ecr.creds.dev", ...
    pub resource: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

/// A running emulator. Dropping it leaves the server running until the runtime ends; call
/// [`K8sEmulator::shutdown`] to stop it.
pub struct K8sEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
}

// === impl K8sEmulator ===

impl K8sEmulator {
    /// Binds `cfg.bind`, registers `cfg.crds` and serves in the background; an invalid
    /// CRD or admission policy fails here (`InvalidInput`).
    pub async fn start(cfg: EmulatorConfig) -> std::io::Result<K8sEmulator> {
        let mut table = kinds::KindTable::new(cfg.kinds.clone());
        for crd in &cfg.crds {
            table.register_crd_yaml(crd).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
            })?;
        }
        let store = Arc::new(Store::new(
            table,
            cfg.history_size,
            cfg.auto_default_service_account,
            cfg.garbage_collection,
        ));
        if let Some(nsk) = store.kinds().namespaces() {
            for ns in &cfg.namespaces {
                store
                    .create(
                        nsk,
                        None,
                        json!({"metadata": {"name": ns}}),
                        store::WriteTarget::Direct,
                        None,
                    )
                    .map_err(|e| {
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                    })?;
            }
        }
        let admission = if cfg.admission_policies.is_empty() {
            None
        } else {
            Some(
                PolicySet::parse(&cfg.admission_policies)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            )
        };
        let (tls, ca_pem) = if cfg.tls {
            let m = tls::generate().map_err(std::io::Error::other)?;
            (Some(m.server_config), Some(m.ca_pem))
        } else {
            (None, None)
        };
        let settings = ServerSettings {
            bookmark_interval: cfg.bookmark_interval,
            watch_timeout: cfg.watch_timeout,
            restart_refuse: cfg.restart_refuse,
        };
        let shared = Shared::start(
            store,
            cfg.token,
            cfg.expired_as_http_status,
            settings,
            tls,
            cfg.request_log_capacity,
            cfg.bind,
        )
        .await?;
        // Set before anyone knows the address, so no request runs without them.
        *shared.user.write().unwrap_or_else(|p| p.into_inner()) = cfg.user;
        *shared.admission.write().unwrap_or_else(|p| p.into_inner()) = admission.map(Arc::new);
        shared.lag.set(cfg.watch_lag);
        let addr = shared.addr().await;
        Ok(K8sEmulator {
            shared,
            addr,
            ca_pem,
        })
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The bound address (the port matters when `bind` asked for 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate (TLS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Watch streams open right now: each holds a subscription to the drop signal until
    /// it ends (a stream whose client went away ends at its next event or bookmark).
    pub fn open_watches(&self) -> usize {
        self.shared.drops.receiver_count()
    }

    /// Changes the accepted bearer token at runtime (token rotation); `None` disables auth.
    pub fn set_token(&self, token: Option<String>) {
        *self.shared.token.write().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// Enforces RBAC for API requests from now on (403 Forbidden for anything the policy
    /// does not grant); `None` allows everything again.
    pub fn set_rbac(&self, policy: Option<RbacPolicy>) {
        *self.shared.rbac.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Changes the username API requests run as (`None`: the cluster admin).
    pub fn set_user(&self, user: Option<String>) {
        *self.shared.user.write().unwrap_or_else(|p| p.into_inner()) = user;
    }

    /// Enforces these ValidatingAdmissionPolicy (+ Binding) YAML texts from now on; an
    /// empty list turns admission control off. Denials recorded so far are kept.
    pub fn set_admission(&self, policies: &[String]) -> Result<(), String> {
        let set = if policies.is_empty() {
            None
        } else {
            Some(Arc::new(PolicySet::parse(policies)?))
        };
        *self
            .shared
            .admission
            .write()
            .unwrap_or_else(|p| p.into_inner()) = set;
        Ok(())
    }

    /// Every write an admission policy denied so far, oldest first.
    pub fn admission_denials(&self) -> Vec<Denial> {
        self.shared
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fault injection, settable while clients run ([`FaultConfig`]).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Makes watch events trail their writes from now on (see `lag`).
    pub fn set_watch_lag(&self, lag: WatchLag) {
        self.shared.lag.set(lag);
    }

    /// Every watch goes quiet for `d` while writes go on.
    pub fn stall_watches(&self, d: Duration) {
        self.shared.lag.stall(d);
    }

    /// Answers a too-old watch with HTTP 410 (`true`) or with a 200 stream holding one
    /// ERROR event (`false`) from now on.
    pub fn set_expired_as_http_status(&self, http: bool) {
        self.shared
            .expired_as_http_status
            .store(http, Ordering::Relaxed);
    }

    /// Ends every open watch stream now.
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// The connections open now go silent without closing, as a dead peer's (see
    /// `Shared::freeze_connections`).
    pub fn freeze_connections(&self) {
        self.shared.freeze_connections();
    }

    /// Cuts every connection, refuses connections for the configured time, then listens
    /// again on the same port with the same state.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.shared
            .restart(self.shared.settings.restart_refuse)
            .await
    }

    /// [`K8sEmulator::restart`] refusing connections for `refuse` instead.
    pub async fn restart_with_refusal(&self, refuse: Duration) -> std::io::Result<()> {
        self.shared.restart(refuse).await
    }

    /// Forgets the event history: every resourceVersion before now answers 410.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Events kept for watch resume from now on ([`EmulatorConfig::history_size`]).
    pub fn set_history_size(&self, size: usize) {
        self.shared.store.set_history_size(size);
    }

    /// API requests served over HTTP/2 so far.
    pub fn http2_requests(&self) -> u64 {
        self.shared.http2_requests.load(Ordering::Relaxed)
    }

    /// Bytes (received from, sent to) clients so far, over every connection: what
    /// crossed the sockets, TLS records and HTTP/2 frames included.
    pub fn traffic_bytes(&self) -> (u64, u64) {
        let t = &self.shared.traffic;
        (
            t.received.load(Ordering::Relaxed),
            t.sent.load(Ordering::Relaxed),
        )
    }

    /// TCP connections being served right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.current_rv()
    }

    /// Every request logged, oldest first (bounded by
    /// [`EmulatorConfig::request_log_capacity`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.all()
    }

    /// Every request with the wall-clock time its answer was ready, oldest first.
    pub fn requests_timed(&self) -> Vec<(std::time::SystemTime, RequestRecord)> {
        self.shared.log.timed()
    }

    /// Empties the request log, so a test counts only what comes next.
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    /// Requests per (verb, resource).
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.shared.log.counts()
    }

    /// Requests with this verb on this resource (plural), e.g. `("update", "serviceaccounts")`.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.shared
            .log
            .counts()
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every (verb, group, resource, namespaced?) the clients used.
    pub fn rbac_used(&self) -> BTreeSet<RbacUse> {
        self.shared.log.rbac_used()
    }

    fn kind(&self, resource: &str) -> Result<usize, ApiError> {
        self.shared
            .store
            .kinds()
            .by_name(resource)
            .ok_or_else(ApiError::path_not_found)
    }

    /// Creates or replaces (no preconditions, status kept as given) an object of
    /// `resource` ("secrets", "ecrpullsecrets", "events.events.k8s.io"...). Watchers see it.
    pub fn apply(&self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        let k = self.kind(resource)?;
        self.shared.store.apply(k, obj)
    }

    /// The stored object, or `None` (also for an unknown `resource`).
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let k = self.kind(resource).ok()?;
        self.shared.store.get(k, namespace, name).ok()
    }

    /// Every object of `resource`, in one namespace or all.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        match self.kind(resource) {
            Ok(k) => self.shared.store.objects(k, namespace),
            Err(_) => Vec::new(),
        }
    }

    /// Deletes like a DELETE request (finalizers respected).
    pub fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), ApiError> {
        let k = self.kind(resource)?;
        self.shared
            .store
            .delete(k, namespace, name, &store::Preconditions::default(), None)
            .map(|_| ())
    }

    /// Waits until the object satisfies `pred` (it gets `None` while the object is absent),
    /// returning the object as last seen; `Err(last)` at timeout. Event-driven, no polling,
    /// so it works under paused tokio time too.
    pub async fn wait_for(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        timeout: Duration,
        pred: impl Fn(Option<&Value>) -> bool,
    ) -> Result<Option<Value>, Option<Value>> {
        let Ok(kind) = self.kind(resource) else {
            return Err(None);
        };
        let store = &self.shared.store;
        let (_, mut rx) = store.subscribe();
        let mut current = store.get(kind, namespace, name).ok();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(current.as_ref()) {
                return Ok(current);
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(current),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Err(current),
                // Missed events: re-read the state itself.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    current = store.get(kind, namespace, name).ok();
                }
                Ok(Ok(ev)) => {
                    let ns_ok = !store.kinds().get(kind).namespaced
                        || namespace.is_none_or(|n| ev.namespace == n);
                    let name_ok =
                        ev.object.pointer("/metadata/name").and_then(Value::as_str) == Some(name);
                    if ev.kind == kind && ns_ok && name_ok {
                        current = match ev.etype {
                            store::EventType::Deleted => None,
                            _ => Some((*ev.object).clone()),
                        };
                    }
                }
            }
        }
    }

    /// Changes committed after resourceVersion `rv` (oldest first), from the history window;
    /// `None` when `rv` is older than the window. For "nothing was written" assertions.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Change>> {
        let kinds = self.shared.store.kinds();
        self.shared.store.changes_since(rv).map(|evs| {
            evs.iter()
                .map(|e| Change {
                    resource_version: e.rv,
                    event: e.etype.as_str(),
                    resource: kinds.get(e.kind).qualified(),
                    namespace: (!e.namespace.is_empty()).then(|| e.namespace.clone()),
                    name: e
                        .object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                })
                .collect()
        })
    }

    /// Stops listening, ends watches and cuts connections.
    pub async fn shutdown(self) {
        self.shared.shutdown().await;
    }
}
