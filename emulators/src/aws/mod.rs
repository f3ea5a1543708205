//! Fake AWS endpoints on loopback, one server for all of them (routing by path, method,
//! `X-Amz-Target` and the query `Action`): ECR and ECR Public GetAuthorizationToken, STS
//! AssumeRole / AssumeRoleWithWebIdentity, IMDSv2 and the container credentials endpoint.
//! Faults (throttling, 500s, XML, HTML, truncated bodies, latency) are settable at runtime.
//! ECR, ECR Public and STS AssumeRole verify SigV4 as AWS does (`sigv4`), against the keys
//! the emulator knows (`auth`).

mod auth;
pub mod sigv4;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod password;
mod rolesanywhere;
pub use password::{ecr_password, ECR_PASSWORD_LEN};
pub use rolesanywhere::RolesAnywhereConfig;

pub const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
pub const ECR_PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
pub const IMDS_TOKEN_PATH: &str = "/latest/api/token";
pub const IMDS_CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// Path of the container credentials endpoint (point AWS_CONTAINER_CREDENTIALS_FULL_URI here).
pub const CONTAINER_PATH: &str = "/v1/credentials";

/// The long-term key every emulator knows from the start (others: [`AwsEmulator::add_key`]).
/// The secret has `/` and `+` in it, as real ones do, so a test that searches for it where
/// it must not be (logs, metrics) searches for the awkward kind.
pub const ACCESS_KEY_ID: &str = "AKIAEMULATOREXAMPLE1";
pub const SECRET_ACCESS_KEY: &str = "emulated/Secret+AccessKey/do-not-log-0123456789";
/// The region a client of these endpoints is configured with by default.
pub const REGION: &str = "us-east-1";

/// What the fake endpoints answer.
#[derive(Clone, Debug)]
pub struct AwsEmulatorConfig {
    pub port: u16,
    pub account_id: String,
    /// Region used in proxyEndpoint when the request is not signed.
    pub default_region: String,
    /// Lifetime of ECR tokens (real ECR: 12 hours).
    pub token_lifetime: Duration,
    /// Lifetime of credentials from STS, IMDS and the container endpoint.
    pub credentials_lifetime: Duration,
    /// ECR/ECR Public/AssumeRole verify each request's SigV4 signature against the keys
    /// the emulator knows, and refuse it as AWS would; false accepts anything.
    pub require_signature: bool,
    /// The instance profile role IMDS reports.
    pub imds_role: String,
    /// The Authorization value the container endpoint requires, if any.
    pub container_token: Option<String>,
    /// The password of every ECR token issued (user `AWS`), so a real registry can be set
    /// up to accept it; `None`: a new random one of ECR's size per call, as ECR does
    /// ([`ecr_password`]).
    pub token_password: Option<String>,
    /// Serve HTTPS with a fresh self-signed certificate for `localhost` and `127.0.0.1`
    /// (trust it through [`AwsEmulator::certificate_der`]).
    pub tls: bool,
    /// IAM Roles Anywhere's CreateSession (`POST /sessions`) and its trust anchor.
    pub roles_anywhere: Option<RolesAnywhereConfig>,
}

impl Default for AwsEmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            account_id: "123456789012".into(),
            default_region: "us-east-1".into(),
            token_lifetime: Duration::from_secs(12 * 3600),
            credentials_lifetime: Duration::from_secs(3600),
            require_signature: true,
            imds_role: "ecr-node-role".into(),
            container_token: None,
            token_password: None,
            tls: false,
            roles_anywhere: None,
        }
    }
}

/// A fault the next requests meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 ThrottlingException with `x-amzn-ErrorType` (JSON 1.1 style).
    Throttle,
    /// 500 with a JSON InternalFailure body.
    ServerError,
    /// 400 with an XML `<ErrorResponse>` (code given).
    XmlError(String),
    /// 400 AccessDeniedException.
    AccessDenied,
    /// 502 with an HTML page, as a proxy or load balancer sends.
    Html,
    /// 200 with a JSON body cut in the middle.
    Truncated,
    /// The normal answer, after this delay.
    Latency(Duration),
}

/// Counters of answered requests by endpoint (faulted ones included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub ecr: u64,
    pub ecr_public: u64,
    pub sts_assume_role: u64,
    pub sts_web_identity: u64,
    pub imds_token: u64,
    pub imds_credentials: u64,
    pub container: u64,
    pub total: u64,
}

#[derive(Default)]
struct Counters {
    ecr: AtomicU64,
    ecr_public: AtomicU64,
    sts_assume_role: AtomicU64,
    sts_web_identity: AtomicU64,
    imds_token: AtomicU64,
    imds_credentials: AtomicU64,
    container: AtomicU64,
    total: AtomicU64,
    issued: AtomicU64,
}

struct State {
    config: Mutex<AwsEmulatorConfig>,
    counters: Counters,
    /// The fault and how many more requests meet it (None: every request).
    fault: Mutex<Option<(Fault, Option<u32>)>>,
    /// Headers of the last request per endpoint name ("ecr", "sts", "container", ...).
    last_headers: Mutex<HashMap<&'static str, HeaderMap>>,
    /// The last form body STS received (tests check WebIdentityToken was read fresh).
    last_sts_form: Mutex<HashMap<String, String>>,
    imds_tokens: Mutex<Vec<String>>,
    /// Every ECR authorizationToken handed out, with its expiresAt (epoch seconds).
    issued_ecr: Mutex<HashMap<String, i64>>,
    /// The access keys requests may be signed with.
    keys: auth::Keys,
}

/// A running emulator; stops when dropped.
pub struct AwsEmulator {
    addr: SocketAddr,
    certificate_der: Option<Vec<u8>>,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl AwsEmulator ===

impl AwsEmulator {
    /// Binds 127.0.0.1:`config.port` (0: ephemeral) and serves in the background.
    pub async fn start(config: AwsEmulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let (acceptor, certificate_der) = if config.tls {
            let (acceptor, der) = tls_acceptor()?;
            (Some(acceptor), Some(der))
        } else {
            (None, None)
        };
        let state = Arc::new(State {
            config: Mutex::new(config),
            counters: Counters::default(),
            fault: Mutex::new(None),
            last_headers: Mutex::new(HashMap::new()),
            last_sts_form: Mutex::new(HashMap::new()),
            imds_tokens: Mutex::new(Vec::new()),
            issued_ecr: Mutex::new(HashMap::new()),
            keys: auth::Keys::default(),
        });
        state.keys.add(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None);
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            certificate_der,
            state,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS; no trailing slash.
    pub fn url(&self) -> String {
        match self.certificate_der {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The DER of the self-signed server certificate, when serving TLS.
    pub fn certificate_der(&self) -> Option<Vec<u8>> {
        self.certificate_der.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn calls(&self) -> Calls {
        let c = &self.state.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Calls {
            ecr: get(&c.ecr),
            ecr_public: get(&c.ecr_public),
            sts_assume_role: get(&c.sts_assume_role),
            sts_web_identity: get(&c.sts_web_identity),
            imds_token: get(&c.imds_token),
            imds_credentials: get(&c.imds_credentials),
            container: get(&c.container),
            total: get(&c.total),
        }
    }

    /// The next `times` requests (None: all, until cleared) meet `fault`.
    pub fn set_fault(&self, fault: Fault, times: Option<u32>) {
        *lock(&self.state.fault) = Some((fault, times));
    }

    pub fn clear_fault(&self) {
        *lock(&self.state.fault) = None;
    }

    /// Changes the configuration of the running emulator (token lifetime, account...).
    pub fn update_config(&self, f: impl FnOnce(&mut AwsEmulatorConfig)) {
        f(&mut lock(&self.state.config));
    }

    /// Headers of the last request to `endpoint` ("ecr", "ecr-public", "sts", "imds",
    /// "container").
    pub fn last_headers(&self, endpoint: &str) -> Option<HeaderMap> {
        lock(&self.state.last_headers).get(endpoint).cloned()
    }

    /// Every ECR (and ECR Public) `authorizationToken` issued so far, with the `expiresAt`
    /// (epoch seconds) it was issued with: tests check what Secrets hold against it.
    pub fn issued_ecr_tokens(&self) -> HashMap<String, i64> {
        lock(&self.state.issued_ecr).clone()
    }

    /// Teaches the emulator a long-term access key, as IAM issuing it would. A key id it
    /// knows already keeps its first secret (false): signing with another is refused.
    pub fn add_key(&self, access_key_id: &str, secret_access_key: &str) -> bool {
        self.state.keys.add(access_key_id, secret_access_key, None)
    }

    /// Teaches the emulator temporary credentials issued elsewhere: requests must carry
    /// this session token.
    pub fn add_session_key(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        token: &str,
    ) -> bool {
        self.state
            .keys
            .add(access_key_id, secret_access_key, Some(token))
    }

    /// A field of the last STS form body.
    pub fn last_sts_param(&self, name: &str) -> Option<String> {
        lock(&self.state.last_sts_form).get(name).cloned()
    }
}

/// A TLS acceptor with a fresh self-signed certificate (HTTP/1.1 only, like AWS's
/// JSON and query endpoints).
fn tls_acceptor() -> std::io::Result<(tokio_rustls::TlsAcceptor, Vec<u8>)> {
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    };
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| invalid(&e))?;
    let der = certified.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(der.clone())],
            key,
        )
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), der))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut r = answer(status, "application/x-amz-json-1.1", body);
    if let Ok(v) = code.parse() {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>emu</RequestId></ErrorResponse>"
    );
    answer(status, "text/xml", body)
}

/// Takes one use of the current fault, if any.
fn take_fault(state: &State) -> Option<Fault> {
    let mut guard = lock(&state.fault);
    let (fault, remaining) = guard.as_mut()?;
    let fault = fault.clone();
    match remaining {
        None => {}
        Some(0) => {
            *guard = None;
            return None;
        }
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                *guard = None;
            }
        }
    }
    Some(fault)
}

/// The region from `Credential=AKID/20250101/REGION/service/aws4_request`, unverified
/// (when signatures are not checked).
fn signed_region(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    scope.split('/').nth(2).map(str::to_string)
}

/// Verifies the request's signature for `service` when the emulator checks signatures;
/// the signed region (if any), or why AWS would refuse it.
fn check_signature(
    state: &State,
    parts: &http::request::Parts,
    body: &[u8],
    service: &str,
) -> Result<Option<String>, sigv4::Refusal> {
    if !lock(&state.config).require_signature {
        return Ok(signed_region(&parts.headers));
    }
    let request = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body,
    };
    sigv4::verify(&request, service, OffsetDateTime::now_utc(), |id| {
        state.keys.get(id)
    })
    .map(|v| Some(v.region))
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Issues a fresh set of temporary credentials.
fn issue(state: &State) -> (String, String, String, OffsetDateTime) {
    let n = state.counters.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let lifetime = lock(&state.config).credentials_lifetime;
    let expiry = OffsetDateTime::now_utc() + lifetime;
    let (ak, sk, token) = (
        format!("ASIAEMULATOR{n:08}"),
        format!("emulated-secret-{n}"),
        format!("emulated-session-token-{n}"),
    );
    state.keys.issued(&ak, &sk, &token, expiry);
    (ak, sk, token, expiry)
}

async fn handle(state: &State, req: Request<Incoming>) -> Answer {
    state.counters.total.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::BAD_REQUEST, "text/plain", "unreadable body"),
    };
    let path = parts.uri.path().to_string();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let endpoint: &'static str = match (&parts.method, path.as_str(), target.as_str()) {
        (&Method::PUT, IMDS_TOKEN_PATH, _) => "imds",
        (&Method::GET, p, _) if p.starts_with(IMDS_CREDENTIALS_PATH) => "imds",
        (&Method::GET, CONTAINER_PATH, _) => "container",
        (&Method::POST, "/", ECR_TARGET) => "ecr",
        (&Method::POST, "/", ECR_PUBLIC_TARGET) => "ecr-public",
        (&Method::POST, "/", "") => "sts",
        (&Method::POST, "/sessions", _) => "rolesanywhere",
        _ => {
            return answer(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no such endpoint in the AWS emulator",
            )
        }
    };
    lock(&state.last_headers).insert(endpoint, parts.headers.clone());
    match endpoint {
        "ecr" => state.counters.ecr.fetch_add(1, Ordering::SeqCst),
        "ecr-public" => state.counters.ecr_public.fetch_add(1, Ordering::SeqCst),
        "container" => state.counters.container.fetch_add(1, Ordering::SeqCst),
        "imds" if parts.method == Method::PUT => {
            state.counters.imds_token.fetch_add(1, Ordering::SeqCst)
        }
        "imds" => state
            .counters
            .imds_credentials
            .fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
    if let Some(fault) = take_fault(state) {
        match fault {
            Fault::Throttle => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "ThrottlingException",
                    "Rate exceeded",
                )
            }
            Fault::ServerError => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    "emulated server error",
                )
            }
            Fault::AccessDenied => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "AccessDeniedException",
                    "User is not authorized to perform: ecr:GetAuthorizationToken",
                )
            }
            Fault::XmlError(code) => {
                return xml_error(StatusCode::BAD_REQUEST, &code, "emulated XML error")
            }
            Fault::Html => {
                return answer(
                    StatusCode::BAD_GATEWAY,
                    "text/html",
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                )
            }
            Fault::Truncated => {
                return answer(
                    StatusCode::OK,
                    "application/x-amz-json-1.1",
                    r#"{"authorizationData":[{"authorizationTok"#,
                )
            }
            Fault::Latency(d) => tokio::time::sleep(d).await,
        }
    }
    let config = lock(&state.config).clone();
    match endpoint {
        "ecr" | "ecr-public" => {
            let region = match check_signature(state, &parts, &body, endpoint) {
                Ok(region) => region,
                Err(refusal) => return auth::refused(&refusal, auth::Protocol::Json),
            };
            let public = endpoint == "ecr-public";
            let expires = OffsetDateTime::now_utc() + config.token_lifetime;
            let password = config.token_password.clone().unwrap_or_else(ecr_password);
            let token = STANDARD.encode(format!("AWS:{password}"));
            let expires_at = expires.unix_timestamp() as f64;
            lock(&state.issued_ecr).insert(token.clone(), expires.unix_timestamp());
            let body = if public {
                serde_json::json!({"authorizationData": {"authorizationToken": token, "expiresAt": expires_at}})
            } else {
                let region = region.unwrap_or(config.default_region.clone());
                serde_json::json!({"authorizationData": [{
                    "authorizationToken": token,
                    "expiresAt": expires_at,
                    "proxyEndpoint": format!("https://{}.dkr.ecr.{region}.amazonaws.com", config.account_id),
                }]})
            };
            answer(
                StatusCode::OK,
                "application/x-amz-json-1.1",
                body.to_string(),
            )
        }
        "sts" => sts(state, &parts, &body),
        "imds" => imds(state, &config, &parts.method, &path, &parts.headers),
        "rolesanywhere" => {
            let arrived = rolesanywhere::Arrived {
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                body: &body,
            };
            rolesanywhere::create_session(state, config.roles_anywhere.as_ref(), &arrived)
        }
        _ => container(state, &config, &parts.headers),
    }
}

fn sts(state: &State, parts: &http::request::Parts, body: &[u8]) -> Answer {
    let params = form(body);
    *lock(&state.last_sts_form) = params.clone();
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
    match action {
        "AssumeRole" => {
            state
                .counters
                .sts_assume_role
                .fetch_add(1, Ordering::SeqCst);
            if let Err(refusal) = check_signature(state, parts, body, "sts") {
                return auth::refused(&refusal, auth::Protocol::Query);
            }
        }
        "AssumeRoleWithWebIdentity" => {
            state
                .counters
                .sts_web_identity
                .fetch_add(1, Ordering::SeqCst);
            if params.get("WebIdentityToken").is_none_or(|t| t.is_empty()) {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdentityToken",
                    "No WebIdentityToken",
                );
            }
        }
        _ => return xml_error(StatusCode::BAD_REQUEST, "InvalidAction", "Unknown Action"),
    }
    if role_arn.is_empty() || !params.contains_key("RoleSessionName") {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn and RoleSessionName are required",
        );
    }
    let (ak, sk, token, expiry) = issue(state);
    let body = format!(
        r#"<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result><Credentials><AccessKeyId>{ak}</AccessKeyId><SecretAccessKey>{sk}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><Arn>{role_arn}/session</Arn></AssumedRoleUser></{action}Result></{action}Response>"#,
        rfc3339(expiry)
    );
    answer(StatusCode::OK, "text/xml", body)
}

fn imds(
    state: &State,
    config: &AwsEmulatorConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Answer {
    if method == Method::PUT {
        if headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .is_none()
        {
            return answer(StatusCode::BAD_REQUEST, "text/plain", "missing ttl header");
        }
        let token = format!(
            "imds-session-{}",
            state.counters.imds_token.load(Ordering::SeqCst)
        );
        lock(&state.imds_tokens).push(token.clone());
        return answer(StatusCode::OK, "text/plain", token);
    }
    let presented = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !lock(&state.imds_tokens).iter().any(|t| t == presented) {
        return answer(StatusCode::UNAUTHORIZED, "text/plain", "");
    }
    let role = path.trim_start_matches(IMDS_CREDENTIALS_PATH);
    if role.is_empty() {
        return answer(StatusCode::OK, "text/plain", config.imds_role.clone());
    }
    if role != config.imds_role {
        return answer(StatusCode::NOT_FOUND, "text/plain", "");
    }
    credentials_json(state)
}

fn container(state: &State, config: &AwsEmulatorConfig, headers: &HeaderMap) -> Answer {
    if let Some(want) = &config.container_token {
        let got = headers.get("authorization").and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return answer(
                StatusCode::UNAUTHORIZED,
                "application/json",
                r#"{"code":"AccessDeniedException","message":"bad authorization token"}"#,
            );
        }
    }
    credentials_json(state)
}

fn credentials_json(state: &State) -> Answer {
    let (ak, sk, token, expiry) = issue(state);
    let body = serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": ak,
        "SecretAccessKey": sk,
        "Token": token,
        "Expiration": rfc3339(expiry),
        "LastUpdated": rfc3339(OffsetDateTime::now_utc()),
    });
    answer(StatusCode::OK, "application/json", body.to_string())
}
