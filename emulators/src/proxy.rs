//! A logging reverse proxy in front of the Kubernetes emulator. Several operator replicas
//! talk to one emulator, whose request log cannot tell them apart; each replica gets a
//! proxy of its own, which records every request it forwards (bodies included) and
//! streams the answers back unchanged, watches too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::client;

/// One request a replica sent, as its proxy saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string ("" when none).
    pub query: String,
    /// The request body.
    pub body: Bytes,
    /// The `User-Agent` header ("" when none).
    pub user_agent: String,
    /// The upstream's status; 502 when the upstream could not be reached.
    pub status: u16,
}

// === impl Logged ===

impl Logged {
    /// Anything but a read: create, update, patch, delete.
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// A request for a coordination Lease.
    pub fn is_lease(&self) -> bool {
        self.path.contains("/leases")
    }
}

/// The proxy's address and the log of what it forwarded.
#[derive(Clone)]
pub struct Proxy {
    /// Where the proxy listens (loopback).
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

// === impl Proxy ===

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (plain HTTP/1.1).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = shared.clone();
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    forward(log.clone(), upstream, req)
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Proxy { addr, log })
    }

    /// `http://<addr>`, for `--api-server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request forwarded so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The writes among [`Proxy::requests`].
    pub fn writes(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_write)
            .collect()
    }
}

/// Forwards one request on a fresh connection and logs it with the upstream's status.
async fn forward(
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
    let mut entry = Logged {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        body: body.clone(),
        user_agent: parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        status: 502,
    };
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    for (k, v) in parts.headers.iter() {
        if k != http::header::HOST {
            out = out.header(k, v);
        }
    }
    let answer = match out.body(Full::new(body)) {
        Ok(out) => client::send(upstream, out).await.ok(),
        Err(_) => None,
    };
    let resp = match answer {
        Some(resp) => {
            entry.status = resp.status().as_u16();
            resp.map(|b| b.boxed())
        }
        None => {
            let mut bad =
                hyper::Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *bad.status_mut() = http::StatusCode::BAD_GATEWAY;
            bad
        }
    };
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
    Ok(resp)
}
