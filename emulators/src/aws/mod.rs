//! Fake AWS endpoints on loopback, one server for all of them (routing by path, method,
//! `X-Amz-Target` and the query `Action`): ECR and ECR Public GetAuthorizationToken, STS
//! AssumeRole / AssumeRoleWithWebIdentity, IMDSv2 and the container credentials endpoint.
//! Faults (throttling, 500s, XML, HTML, truncated bodies, latency) are settable at runtime.
//! ECR, ECR Public and STS AssumeRole verify SigV4 as AWS does (`sigv4`), against the keys
//! the emulator knows (`auth`).
//!
//! Files, bottom up: `answers` (bodies and error shapes), `config` (settings, faults,
//! paths), `state` (what lives between requests), `credentials` (STS, IMDS, container),
//! `rolesanywhere` (CreateSession), `dispatch` (one request to its endpoint); this file
//! starts the server and is what tests hold.

mod answers;
mod auth;
mod config;
mod credentials;
mod dispatch;
mod password;
mod rolesanywhere;
mod sigv4;
mod state;

use http::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use dispatch::handle;
use state::Counters;
// What `rolesanywhere` takes from here.
use answers::{answer, lock};
use state::State;

pub use config::{
    AwsEmulatorConfig, Fault, RolesAnywhereConfig, ACCESS_KEY_ID, CONTAINER_PATH, ECR_TARGET,
    REGION, SECRET_ACCESS_KEY,
};
pub use password::{ecr_password, ECR_PASSWORD_LEN};
pub use state::Calls;

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

    /// The bound address (the port matters when `config.port` was 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the request counters, so a test asserts how often AWS was asked.
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

    /// Back to normal answers, whatever `times` the last fault had left.
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
