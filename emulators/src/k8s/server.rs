//! The API server's listener: binds (re-binding on the same port after a restart), accepts,
//! and serves each connection with hyper (http1 and h2 through hyper-util's auto builder),
//! optionally over TLS, until it ends or the connections are cut. The state lives on in
//! [`Shared`] across restarts; what a request does is in `dispatch`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};

use super::counted::{Counted, Traffic};
use super::dispatch::handle;
use super::faults::Faults;
use super::lag::LagControl;
use super::requests::RequestLog;
use super::server_state::{ListenerCtl, ServerSettings, Shared};
use super::store::Store;

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
    pub(crate) async fn start(
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
            freezes: watch::channel(0).0,
            tls,
            listener: tokio::sync::Mutex::new(ListenerCtl {
                addr,
                stop: None,
                task: None,
            }),
            restarts,
            open_connections: AtomicUsize::new(0),
            http2_requests: Default::default(),
            traffic: Arc::new(Traffic::default()),
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

    pub(crate) async fn addr(&self) -> SocketAddr {
        self.listener.lock().await.addr
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
    pub(crate) async fn restart(self: &Arc<Self>, refuse: Duration) -> std::io::Result<()> {
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

    pub(crate) async fn shutdown(&self) {
        self.stop_listening().await;
        self.drop_watches();
        self.cut_connections();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    // Subscribed here, not in the task: a task that first ran after a
                    // restart's cut would have missed it and served on.
                    let signals = Signals {
                        cut: shared.cuts.subscribe(),
                        freeze: shared.freezes.subscribe(),
                    };
                    tokio::spawn(serve_connection(shared.clone(), stream, signals));
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

/// A connection's receivers of cuts and freezes, subscribed when it was accepted: a
/// signal sent after that reaches it.
struct Signals {
    cut: watch::Receiver<u64>,
    freeze: watch::Receiver<u64>,
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, signals: Signals) {
    shared.open_connections.fetch_add(1, Ordering::SeqCst);
    let stream = Counted::new(stream, shared.traffic.clone());
    let _open = OpenConnection(shared.clone());
    let Signals {
        mut cut,
        mut freeze,
    } = signals;
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
            serve_until_cut(conn, &mut cut, &mut freeze).await;
        }
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            serve_until_cut(conn, &mut cut, &mut freeze).await;
        }
    }
}

/// Drives `conn` until it ends or is cut. Frozen, it is no longer polled (nothing read,
/// nothing written, not even a PING's ACK) but kept open until the next cut.
async fn serve_until_cut<F: std::future::Future>(
    conn: F,
    cut: &mut watch::Receiver<u64>,
    freeze: &mut watch::Receiver<u64>,
) {
    let mut conn = std::pin::pin!(conn);
    let frozen = tokio::select! {
        _ = &mut conn => false,
        _ = cut.changed() => false,
        _ = freeze.changed() => true,
    };
    if frozen {
        let _ = cut.changed().await;
    }
}
