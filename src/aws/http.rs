//! The HTTP transport for AWS calls: one pooled hyper client over rustls (webpki roots,
//! ring), per-request timeouts, and HTTPS_PROXY / NO_PROXY through CONNECT tunnels.
//! Plain `http://` endpoints are allowed: tests, emulators, IMDS and AWS_ENDPOINT_URL
//! overrides use them; they are always reached directly.

use super::env::AwsEnv;
use super::error::AwsError;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who is calling, as CloudTrail and proxies log it.
pub(crate) const USER_AGENT: &str = concat!("ecr-creds-refresher/", env!("CARGO_PKG_VERSION"));

/// AWS answers we read are small (a token is ~2 KiB); a bigger body is not an AWS answer.
const MAX_BODY: usize = 1024 * 1024;

/// Transport settings with their reasons.
#[derive(Clone, Debug)]
pub(crate) struct HttpConfig {
    /// TCP connect timeout: AWS endpoints answer SYNs in milliseconds; a black-holed
    /// route should fail fast so retries can try again.
    pub connect_timeout: Duration,
    /// Whole request (send + full body). ECR answers in well under a second.
    pub request_timeout: Duration,
    /// Extra trusted roots (private CAs of TLS-intercepting proxies; tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            extra_roots: Vec::new(),
        }
    }
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type DirectClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
type TunnelClient = Client<HttpsConnector<Tunnel<HttpConnector>>, Full<Bytes>>;

/// Cheap to clone; clones share the connection pools.
#[derive(Clone)]
pub(crate) struct AwsHttp {
    direct: DirectClient,
    proxies: Arc<Proxies>,
    tls: rustls::ClientConfig,
    config: HttpConfig,
}

/// The proxy rules and one pooled client per proxy actually used.
struct Proxies {
    matcher: Matcher,
    tunnels: Mutex<HashMap<String, TunnelClient>>,
}

impl std::fmt::Debug for AwsHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsHttp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// === impl AwsHttp ===

impl AwsHttp {
    /// Builds the client; proxy settings come from HTTPS_PROXY/https_proxy (and
    /// HTTP_PROXY/http_proxy, used only to decide) and NO_PROXY/no_proxy in `env`.
    pub(crate) fn new(env: &AwsEnv, config: HttpConfig) -> Result<Self, AwsError> {
        let tls = tls_config(&config.extra_roots)?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let direct = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        let mut matcher = Matcher::builder();
        if let Some(p) = env.first(&["HTTPS_PROXY", "https_proxy"]) {
            matcher = matcher.https(p);
        }
        if let Some(p) = env.first(&["HTTP_PROXY", "http_proxy"]) {
            matcher = matcher.http(p);
        }
        if let Some(n) = env.first(&["NO_PROXY", "no_proxy"]) {
            matcher = matcher.no(n);
        }
        let proxies = Arc::new(Proxies {
            matcher: matcher.build(),
            tunnels: Mutex::new(HashMap::new()),
        });
        Ok(Self {
            direct,
            proxies,
            tls,
            config,
        })
    }

    /// Sends `request` and reads the whole answer within the request timeout. Non-2xx
    /// statuses are returned, not turned into errors: each caller reads its own error shape.
    pub(crate) async fn send(&self, request: Request<Bytes>) -> Result<HttpResponse, AwsError> {
        let endpoint = endpoint_of(request.uri());
        let mut request = request.map(Full::new);
        // After signing is fine: SigV4 never signs user-agent. CloudTrail shows it.
        request
            .headers_mut()
            .entry(http::header::USER_AGENT)
            .or_insert(http::HeaderValue::from_static(USER_AGENT));
        let client = self.client_for(request.uri())?;
        let exchange = async {
            let response = match client {
                Some(tunnel) => tunnel.request(request).await,
                None => self.direct.request(request).await,
            }
            .map_err(|e| connect_error(&endpoint, &e))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| AwsError::Connect {
                    endpoint: endpoint.clone(),
                    reason: format!("reading the answer failed: {e}"),
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.config.request_timeout, exchange)
            .await
            .map_err(|_| AwsError::Timeout {
                endpoint: endpoint.clone(),
            })?
    }

    /// The tunnel client to use for `uri`, or None to connect directly.
    fn client_for(&self, uri: &http::Uri) -> Result<Option<TunnelClient>, AwsError> {
        if uri.scheme_str() != Some("https") {
            return Ok(None);
        }
        let Some(intercept) = self.proxies.matcher.intercept(uri) else {
            return Ok(None);
        };
        let proxy = intercept.uri().clone();
        let key = proxy.to_string();
        let mut tunnels = self.proxies.tunnels.lock().map_err(|_| AwsError::Connect {
            endpoint: endpoint_of(uri),
            reason: "proxy client table poisoned".into(),
        })?;
        if let Some(client) = tunnels.get(&key) {
            return Ok(Some(client.clone()));
        }
        if proxy.scheme_str() != Some("http") {
            return Err(AwsError::config(
                "HTTPS_PROXY",
                format!(
                    "only http:// proxies are supported (CONNECT over plain TCP), got scheme {:?}",
                    proxy.scheme_str()
                ),
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.config.connect_timeout));
        let mut tunnel = Tunnel::new(proxy, connector);
        if let Some(auth) = intercept.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_only()
            .enable_http1()
            .wrap_connector(tunnel);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        tunnels.insert(key, client.clone());
        Ok(Some(client))
    }
}

/// rustls with the ring provider and the webpki roots (no system store: the image is
/// distroless), plus any extra roots.
fn tls_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, AwsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| AwsError::config("extra CA certificate", e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AwsError::config("TLS", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `scheme://host[:port]`, what errors may name (never the path or query).
pub(crate) fn endpoint_of(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?")
    )
}

/// A failed connection, as [`AwsError::Tls`] when TLS refused it (an untrusted CA, a
/// wrong name, a proxy intercepting): retrying will not help, the trust settings will.
fn connect_error(endpoint: &str, e: &(dyn std::error::Error + 'static)) -> AwsError {
    let endpoint = endpoint.to_string();
    let reason = error_chain(e);
    if is_tls(e, 0) {
        AwsError::Tls { endpoint, reason }
    } else {
        AwsError::Connect { endpoint, reason }
    }
}

/// Whether a rustls error is in `e`'s chain. hyper-rustls wraps tokio-rustls's
/// `io::Error` in another `io::Error`, whose `source()` skips the wrapped error: look
/// inside each `io::Error` too.
fn is_tls(e: &(dyn std::error::Error + 'static), depth: u8) -> bool {
    if depth > 16 {
        return false;
    }
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    let inner = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| is_tls(inner, depth + 1));
    inner || e.source().is_some_and(|c| is_tls(c, depth + 1))
}

/// The error and its causes on one line: hyper's top-level message alone ("client error
/// (Connect)") does not say what to fix.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
