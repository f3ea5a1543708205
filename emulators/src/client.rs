//! A minimal HTTP/1.1 client for loopback: one request on a fresh connection, as a
//! kubelet probe, a Prometheus scrape or another API client sends it. The demo, the
//! bench and the tests all talk to the operator's probes and metrics and to the
//! emulators through it, independent of the operator's own client.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// How long one whole request may take: a peer that accepts and never answers fails the
/// caller instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A whole answer.
#[derive(Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The body, read to its end.
    pub body: Bytes,
}

// === impl Answer ===

impl Answer {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `content-type` header, "" when absent.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.text())
    }
}

/// Sends `req` to `addr` on a new connection and hands back the answer with its body
/// still streaming (a watch stays open for as long as the caller reads it). A request
/// without a `host` header gets `addr` as its host.
pub async fn send(
    addr: SocketAddr,
    mut req: http::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String> {
    let what = format!("{} {}", req.method(), req.uri());
    if !req.headers().contains_key(http::header::HOST) {
        let host = http::HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{what}: cannot connect to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{what}: handshake with {addr}: {e}"))?;
    tokio::spawn(conn);
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

/// One request with an optional `(content type, body)`; the whole answer, within
/// [`TIMEOUT`].
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Answer, String> {
    request_with(addr, method, path, body, &[]).await
}

/// [`request`] with more headers (`Impersonate-User` for the Kubernetes emulator).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut req = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let bytes = match body {
        Some((content_type, bytes)) => {
            req = req.header(http::header::CONTENT_TYPE, content_type);
            bytes
        }
        None => Vec::new(),
    };
    let req = req
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let exchange = async {
        let resp = send(addr, req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer from {addr} within {TIMEOUT:?}"))?
}

/// A GET: probes, metrics, reads.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    request(addr, "GET", path, None).await
}
