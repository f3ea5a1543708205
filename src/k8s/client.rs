//! A raw-HTTP Kubernetes client: one hyper connection pool (HTTP/2 where the server offers
//! it through ALPN), bearer-token auth, typed errors carrying the server's ApiStatus, retries
//! after Retry-After for 429/503, and a timeout on every request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::TokenSource;
use super::config::ClientConfig;
use super::error::{ClientConfigError, Error};
use super::params::{managed, ListParams, Patch, Preconditions, Query, WatchParams};
use super::types::{ApiStatus, ObjectList, WatchEvent};
use super::watch::{decode_event, LineDecoder};

/// Idle connections kept per API server after a burst of writes.
pub(crate) const POOL_MAX_IDLE: usize = 4;
/// Lists of thousands of objects stay well below this; anything larger is refused.
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;

/// What every request accepts, unless it asks for less.
const ACCEPT_JSON: &str = "application/json";
/// A write whose answer the caller needs only the metadata of: the server sends the
/// object as `PartialObjectMetadata` (a managed Secret's answer shrinks from ~9 KB to its
/// ~0.6 KB of metadata). A server that does not shape answers sends the whole object.
const ACCEPT_METADATA: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/// A request body's content type (none without a body) and the answer it accepts.
type Media = (Option<&'static str>, &'static str);

/// Called for every answer with (verb, HTTP code), for the requests-by-verb metric.
pub(crate) type RequestObserver = Arc<dyn Fn(&'static str, u16) + Send + Sync>;

/// A Kubernetes API client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: String,
    token: Option<TokenSource>,
    timeout: Duration,
    max_retries: u32,
    user_agent: http::HeaderValue,
    observer: Option<RequestObserver>,
}

// === impl Client ===

impl Client {
    /// Builds the TLS stack and the pool. Verification is always on for https.
    pub(crate) fn new(cfg: ClientConfig) -> Result<Self, ClientConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match cfg.ca {
            Some(certs) => {
                for cert in certs {
                    roots.add(cert).map_err(|e| ClientConfigError::Tls {
                        reason: format!("CA certificate rejected: {e}"),
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientConfigError::Tls {
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        // A burst of writes opens many HTTP/1.1 connections; after it, a few idle ones
        // serve the steady trickle, and the rest close rather than keep their buffers.
        // Over TLS the API server offers HTTP/2: one connection carries every request and
        // watch. A connection whose peer vanished without a FIN (a dead node, a dropped
        // NAT entry) would then hold them all until each times out, so it is pinged as
        // client-go does (ReadIdleTimeout 30 s, PingTimeout 15 s) and closed when the
        // ping goes unanswered; the next request opens a new one.
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(cfg.h2_ping_interval)
            .http2_keep_alive_timeout(cfg.h2_ping_timeout)
            .http2_keep_alive_while_idle(true)
            .build(https);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                url: cfg.url,
                token: cfg.token,
                timeout: cfg.request_timeout,
                max_retries: cfg.max_retries,
                user_agent: cfg.user_agent,
                observer: None,
            }),
        })
    }

    /// Reports every answer's (verb, code) to `observer`.
    #[must_use]
    pub(crate) fn with_observer(self, observer: RequestObserver) -> Self {
        let inner = &self.inner;
        Client {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                url: inner.url.clone(),
                token: inner.token.clone(),
                timeout: inner.timeout,
                max_retries: inner.max_retries,
                user_agent: inner.user_agent.clone(),
                observer: Some(observer),
            }),
        }
    }

    /// The API server's base URL.
    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.json("get", Method::GET, path.to_string(), None, Bytes::new())
            .await
    }

    /// One page of a list; callers loop on `metadata.continue`.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        collection: &str,
        p: &ListParams,
    ) -> Result<ObjectList<T>, Error> {
        let mut q = Query::default();
        q.opt("labelSelector", p.label_selector.as_deref());
        q.opt("fieldSelector", p.field_selector.as_deref());
        q.opt("limit", p.limit.map(|l| l.to_string()).as_deref());
        q.opt("continue", p.continue_token.as_deref());
        self.json("list", Method::GET, q.path(collection), None, Bytes::new())
            .await
    }

    /// Starts a watch. Events come from [`WatchStream::next`].
    pub(crate) async fn watch<T: DeserializeOwned>(
        &self,
        collection: &str,
        p: &WatchParams,
    ) -> Result<WatchStream<T>, Error> {
        let mut q = Query::default();
        q.opt("watch", Some("true"));
        q.opt("resourceVersion", Some(p.resource_version.as_str()));
        if p.bookmarks {
            q.opt("allowWatchBookmarks", Some("true"));
        }
        q.opt(
            "timeoutSeconds",
            Some(p.timeout_seconds.to_string().as_str()),
        );
        q.opt("labelSelector", p.label_selector.as_deref());
        q.opt("fieldSelector", p.field_selector.as_deref());
        let resp = self
            .send(
                "watch",
                Method::GET,
                &q.path(collection),
                (None, ACCEPT_JSON),
                Bytes::new(),
            )
            .await?;
        let resp = self.check(resp).await?;
        Ok(WatchStream {
            body: resp.into_body(),
            decoder: LineDecoder::default(),
            idle: Duration::from_secs(u64::from(p.timeout_seconds) + 15),
            done: false,
            _t: std::marker::PhantomData,
        })
    }

    pub(crate) async fn create<B: Serialize, T: DeserializeOwned>(
        &self,
        collection: &str,
        body: &B,
    ) -> Result<T, Error> {
        let body = to_body(body)?;
        self.json(
            "create",
            Method::POST,
            managed(collection),
            Some("application/json"),
            body,
        )
        .await
    }

    /// PUT; with `metadata.resourceVersion` set, a stale object gets 409 Conflict.
    pub(crate) async fn replace<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let body = to_body(body)?;
        self.json(
            "update",
            Method::PUT,
            managed(path),
            Some("application/json"),
            body,
        )
        .await
    }

    pub(crate) async fn patch<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        patch: Patch<'_, B>,
    ) -> Result<T, Error> {
        let body = to_body(patch.body())?;
        let target = managed(path);
        self.json(
            "patch",
            Method::PATCH,
            target,
            Some(patch.content_type()),
            body,
        )
        .await
    }

    /// POST of a body serialised by the caller, for a caller that reads only the
    /// answer's metadata (a Secret's cache projection): the answer is asked for as
    /// `PartialObjectMetadata` and comes back unparsed, in that form or whole.
    pub(crate) async fn create_raw(&self, collection: &str, body: Bytes) -> Result<Bytes, Error> {
        let media = (Some("application/json"), ACCEPT_METADATA);
        self.raw("create", Method::POST, managed(collection), media, body)
            .await
    }

    /// A JSON merge patch serialised by the caller; the answer as [`Client::create_raw`]'s.
    pub(crate) async fn merge_patch_raw(&self, path: &str, body: Bytes) -> Result<Bytes, Error> {
        let media = (Some("application/merge-patch+json"), ACCEPT_METADATA);
        self.raw("patch", Method::PATCH, managed(path), media, body)
            .await
    }

    /// PATCH to the status subresource of the object at `path`.
    pub(crate) async fn patch_status<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        patch: Patch<'_, B>,
    ) -> Result<T, Error> {
        self.patch(&format!("{path}/status"), patch).await
    }

    /// DELETE only the object we saw: the server answers 409 when its uid or
    /// resourceVersion differ (replaced or changed since we looked), instead of deleting it.
    pub(crate) async fn delete_with(
        &self,
        path: &str,
        preconditions: Option<&Preconditions>,
    ) -> Result<(), Error> {
        let (content_type, body) = match preconditions {
            None => (None, Bytes::new()),
            Some(p) => (
                Some("application/json"),
                to_body(&serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "preconditions": p,
                }))?,
            ),
        };
        let resp = self
            .send(
                "delete",
                Method::DELETE,
                path,
                (content_type, ACCEPT_JSON),
                body,
            )
            .await?;
        let resp = self.check(resp).await?;
        // Drain so the connection returns to the pool.
        read_body(resp.into_body(), self.inner.timeout).await?;
        Ok(())
    }

    // --- plumbing ---

    async fn json<T: DeserializeOwned>(
        &self,
        verb: &'static str,
        method: Method,
        path: String,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<T, Error> {
        let media = (content_type, ACCEPT_JSON);
        let bytes = self.raw(verb, method, path, media, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: "API answer",
            source,
        })
    }

    /// One request; a 2xx answer's body, whole.
    async fn raw(
        &self,
        verb: &'static str,
        method: Method,
        path: String,
        media: Media,
        body: Bytes,
    ) -> Result<Bytes, Error> {
        let resp = self.send(verb, method, &path, media, body).await?;
        let resp = self.check(resp).await?;
        read_body(resp.into_body(), self.inner.timeout).await
    }

    /// Turns a non-2xx answer into [`Error::Api`] with the server's ApiStatus.
    async fn check(&self, resp: Response<Incoming>) -> Result<Response<Incoming>, Error> {
        let code = resp.status();
        if code.is_success() {
            return Ok(resp);
        }
        let bytes = read_body(resp.into_body(), self.inner.timeout)
            .await
            .unwrap_or_default();
        Err(Error::Api {
            status: status_from(code, &bytes),
        })
    }

    /// Sends one request, retrying 429/503 (and any 5xx with Retry-After) after the
    /// server's Retry-After, and once after a 401 with a re-read token.
    async fn send(
        &self,
        verb: &'static str,
        method: Method,
        path: &str,
        media: Media,
        body: Bytes,
    ) -> Result<Response<Incoming>, Error> {
        let mut retries = 0;
        let mut reauthenticated = false;
        loop {
            let req = self.build(method.clone(), path, media, body.clone())?;
            let timeout = self.inner.timeout;
            let resp = match tokio::time::timeout(timeout, self.inner.http.request(req)).await {
                Err(_) => return Err(Error::Timeout { after: timeout }),
                Ok(Err(source)) => return Err(Error::Transport { source }),
                Ok(Ok(resp)) => resp,
            };
            let code = resp.status().as_u16();
            if let Some(observe) = &self.inner.observer {
                observe(verb, code);
            }
            if code == 401 && !reauthenticated {
                if let Some(token) = &self.inner.token {
                    token.invalidate();
                    reauthenticated = true;
                    continue;
                }
            }
            let retry_after = retry_after(&resp);
            let retryable = code == 429 || code == 503 || (code >= 500 && retry_after.is_some());
            if retryable && retries < self.inner.max_retries {
                retries += 1;
                let wait = crate::backoff::retry_after_delay(retry_after);
                tracing::debug!(
                    verb,
                    path,
                    code,
                    ?wait,
                    retries,
                    "retrying after Retry-After"
                );
                // Drain the refused answer so its connection can be reused.
                let _ = read_body(resp.into_body(), timeout).await;
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(resp);
        }
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        (content_type, accept): Media,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.inner.url, path))
            .header(header::ACCEPT, accept)
            .header(header::USER_AGENT, self.inner.user_agent.clone());
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(token) = &self.inner.token {
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.current()))
                .map_err(|_| Error::Request {
                    message: "the bearer token holds characters not allowed in a header"
                        .to_string(),
                })?;
            value.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, value);
        }
        req.body(Full::new(body)).map_err(|e| Error::Request {
            message: format!("cannot build a request for {path}: {e}"),
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .finish()
    }
}

/// A watch in progress: newline-delimited JSON events over a chunked body.
pub(crate) struct WatchStream<T> {
    body: Incoming,
    decoder: LineDecoder,
    idle: Duration,
    done: bool,
    _t: std::marker::PhantomData<fn() -> T>,
}

// === impl WatchStream ===

impl<T: DeserializeOwned> WatchStream<T> {
    /// The next event; `None` when the server ended the stream cleanly. A stream silent
    /// for longer than the server's timeout (plus slack) fails with [`Error::Timeout`].
    pub(crate) async fn next(&mut self) -> Option<Result<WatchEvent<T>, Error>> {
        loop {
            match self.decoder.next_line() {
                Ok(Some(line)) => return Some(decode_event(&line)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            if self.done {
                return None;
            }
            match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => {
                    self.done = true;
                    return Some(Err(Error::Timeout { after: self.idle }));
                }
                Ok(None) => {
                    self.done = true;
                    if self.decoder.remainder().iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    // A torn last line: the stream was cut mid-event.
                    return Some(Err(Error::Body {
                        source: "watch stream ended mid-event".into(),
                    }));
                }
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Some(Err(Error::Body {
                        source: Box::new(e),
                    }));
                }
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.decoder.push(data);
                    }
                }
            }
        }
    }
}

async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, Error> {
    let collect = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(Error::Timeout { after: timeout }),
        Ok(Err(e)) => {
            if e.is::<http_body_util::LengthLimitError>() {
                Err(Error::TooLarge { limit: MAX_BODY })
            } else {
                Err(Error::Body { source: e })
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The server's ApiStatus if the body is one, else one made from the HTTP code. A body that
/// is not a ApiStatus is not echoed: it could be anything.
fn status_from(code: StatusCode, body: &[u8]) -> ApiStatus {
    match serde_json::from_slice::<ApiStatus>(body) {
        Ok(mut status) if !status.status.is_empty() || status.code != 0 => {
            if status.code == 0 {
                status.code = code.as_u16();
            }
            status
        }
        _ => ApiStatus {
            status: "Failure".to_string(),
            message: format!(
                "HTTP {} with a body that is not a Kubernetes ApiStatus",
                code.as_u16()
            ),
            reason: code.canonical_reason().unwrap_or("").replace(' ', ""),
            code: code.as_u16(),
        },
    }
}

/// Integer seconds only, as the API server sends it.
fn retry_after(resp: &Response<Incoming>) -> Option<Duration> {
    resp.headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn to_body<B: Serialize + ?Sized>(body: &B) -> Result<Bytes, Error> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|source| Error::Decode {
            what: "request body",
            source,
        })
}

#[cfg(test)]
mod emulated_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_status_body_is_not_echoed() {
        let s = status_from(StatusCode::BAD_GATEWAY, b"<html>secret-ish</html>");
        assert_eq!(s.code, 502);
        assert!(!s.message.contains("secret-ish"));
        let s = status_from(
            StatusCode::NOT_FOUND,
            br#"{"kind":"ApiStatus","status":"Failure","reason":"NotFound","code":404,"message":"secrets \"x\" not found"}"#,
        );
        assert_eq!(s.reason, "NotFound");
    }
}
