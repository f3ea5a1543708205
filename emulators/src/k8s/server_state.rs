//! The state every connection of the API server shares: the store, faults, watch lag, the
//! request log, credentials, RBAC and admission settings, and the listener's controls.
//! Apart from the listener code so the request handlers can hold it without importing
//! the accept loop that calls them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::{header, Request};
use hyper::body::Incoming;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::admission::{Denial, PolicySet};
use super::faults::Faults;
use super::lag::LagControl;
use super::rbac::{Attributes, RbacPolicy};
use super::requests::{RequestLog, RequestRecord};
use super::status::ApiError;
use super::store::Store;

/// The username of requests when no user is configured: a member of system:masters.
pub(crate) const ADMIN: &str = "system:admin";

/// The user a request asks to run as (`Impersonate-User`): a test's person at the
/// keyboard beside the operator's identity. The real server checks `impersonate` RBAC;
/// here the header is trusted, and the RBAC policy (the operator's role) does not apply.
pub(super) fn impersonated(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty())
        .map(str::to_string)
}

/// Settings the server reads on every request.
pub(crate) struct ServerSettings {
    pub bookmark_interval: Option<Duration>,
    pub watch_timeout: Duration,
    pub restart_refuse: Duration,
}

/// The listening socket's controls: where it is bound, how to stop it, its accept task.
pub(super) struct ListenerCtl {
    pub(super) addr: SocketAddr,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: Option<JoinHandle<()>>,
}

/// Everything the connections share.
pub(crate) struct Shared {
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
    pub(super) cuts: watch::Sender<u64>,
    /// Bumped to freeze the connections open at that moment (see [`Shared::freeze_connections`]).
    pub(super) freezes: watch::Sender<u64>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) listener: tokio::sync::Mutex<ListenerCtl>,
    /// Restarts asked for over HTTP run on a worker task: the request's own connection is
    /// among those cut.
    pub(super) restarts: tokio::sync::mpsc::UnboundedSender<Duration>,
    /// Connections being served now (soak tests check the client does not leak them).
    pub open_connections: AtomicUsize,
    /// API requests that came over HTTP/2 (TLS with ALPN `h2`), to show which protocol a
    /// client chose.
    pub http2_requests: AtomicU64,
    /// Bytes received from and sent to clients, TLS records included.
    pub(super) traffic: Arc<super::counted::Traffic>,
}

// === impl Shared ===

impl Shared {
    /// Ends every open watch stream now (clients see a clean end of stream).
    pub(crate) fn drop_watches(&self) {
        self.drops.send_modify(|g| *g += 1);
    }

    pub(super) fn cut_connections(&self) {
        self.cuts.send_modify(|g| *g += 1);
    }

    /// The connections open now stop reading and writing, without closing: a peer on a
    /// dead node or behind a dropped NAT entry, whose sockets send no FIN. Only a client's
    /// own keep-alive (HTTP/2 PING) can tell. New connections are served as usual; frozen
    /// ones close at the next cut, restart or shutdown.
    pub(crate) fn freeze_connections(&self) {
        self.freezes.send_modify(|g| *g += 1);
    }

    /// Queues a restart for the worker task (used by the HTTP control endpoint, whose own
    /// connection is among those cut).
    pub(crate) fn request_restart(&self, refuse: Duration) {
        let _ = self.restarts.send(refuse);
    }

    pub(super) fn authorize(&self, r: &RequestRecord) -> Result<(), ApiError> {
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
    pub(crate) fn username(&self) -> String {
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

    pub(super) fn check_token(&self, req: &Request<Incoming>) -> bool {
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
