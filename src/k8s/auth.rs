//! Where the client's identity comes from: the service-account token (re-read because the
//! kubelet rotates bound tokens), the CA that pins the API server, and in-cluster discovery.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::error::{CaError, ClientConfigError};

/// Where a pod's service-account files are mounted.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Bound tokens rotate about hourly; client-go re-reads once a minute.
pub(crate) const TOKEN_REREAD_INTERVAL: Duration = Duration::from_secs(60);

/// A bearer token, re-read from its file about once a minute and after a 401.
///
/// A failed or empty read keeps the last good token, so a kubelet mid-rewrite never
/// leaves us without credentials.
#[derive(Clone)]
pub(crate) struct TokenSource {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    path: Option<PathBuf>,
    state: Mutex<TokenState>,
}

struct TokenState {
    token: String,
    read_at: Instant,
    stale: bool,
}

// === impl TokenSource ===

impl TokenSource {
    /// Reads the file once now: a missing or empty token at startup is an error.
    pub(crate) fn from_file(path: impl Into<PathBuf>) -> Result<Self, ClientConfigError> {
        let path = path.into();
        let token = read_token(&path)?;
        Ok(TokenSource {
            inner: Arc::new(TokenInner {
                path: Some(path),
                state: Mutex::new(TokenState {
                    token,
                    read_at: Instant::now(),
                    stale: false,
                }),
            }),
        })
    }

    /// A fixed token (tests, or a token given without a file).
    #[cfg(test)]
    pub(crate) fn fixed(token: impl Into<String>) -> Self {
        TokenSource {
            inner: Arc::new(TokenInner {
                path: None,
                state: Mutex::new(TokenState {
                    token: token.into(),
                    read_at: Instant::now(),
                    stale: false,
                }),
            }),
        }
    }

    /// The token to send now, re-reading the file when it is due.
    pub(crate) fn current(&self) -> String {
        let mut state = match self.inner.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(path) = &self.inner.path {
            if state.stale || state.read_at.elapsed() >= TOKEN_REREAD_INTERVAL {
                match read_token(path) {
                    Ok(token) => {
                        if token != state.token {
                            tracing::debug!(path = %path.display(), "service-account token rotated");
                        }
                        state.token = token;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "keeping the last good token");
                    }
                }
                state.read_at = Instant::now();
                state.stale = false;
            }
        }
        state.token.clone()
    }

    /// After a 401: the token may have rotated under us; re-read before the next use.
    pub(crate) fn invalidate(&self) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.stale = true;
        }
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("path", &self.inner.path)
            .field("token", &"<redacted>")
            .finish()
    }
}

fn read_token(path: &Path) -> Result<String, ClientConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ClientConfigError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(ClientConfigError::EmptyToken {
            path: path.display().to_string(),
        });
    }
    Ok(token.to_string())
}

/// Parses every certificate in a PEM file; none is an error (we never fall back to
/// trusting anything else for the API server).
pub(crate) fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientConfigError> {
    let pem = std::fs::read(path).map_err(|source| ClientConfigError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_ca(&pem).map_err(|source| ClientConfigError::BadCa {
        path: path.display().to_string(),
        source,
    })
}

/// Parses PEM certificates from memory.
pub(crate) fn parse_ca(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        certs.push(cert.map_err(CaError::InvalidPem)?);
    }
    if certs.is_empty() {
        return Err(CaError::NoCertificate);
    }
    Ok(certs)
}

/// The in-cluster API server URL from KUBERNETES_SERVICE_HOST/PORT, bracketing IPv6.
pub(crate) fn in_cluster_url(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ClientConfigError> {
    let host = lookup("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
    let port = lookup("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
    match (host, port) {
        (Some(host), Some(port)) => {
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host
            };
            Ok(format!("https://{host}:{port}"))
        }
        _ => Err(ClientConfigError::NotInCluster),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn ipv6_service_host_is_bracketed() {
        let url = in_cluster_url(env(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]));
        assert_eq!(url.unwrap(), "https://[fd00::1]:443");
        let url = in_cluster_url(env(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ]));
        assert_eq!(url.unwrap(), "https://10.0.0.1:6443");
    }

    #[test]
    fn missing_service_env_is_not_in_cluster() {
        assert!(matches!(
            in_cluster_url(env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")])),
            Err(ClientConfigError::NotInCluster)
        ));
    }

    #[test]
    fn token_is_trimmed_and_failed_reread_keeps_last_good() {
        let dir = std::env::temp_dir().join(format!("ecr-token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "abc\n").unwrap();
        let source = TokenSource::from_file(&path).unwrap();
        assert_eq!(source.current(), "abc");
        std::fs::write(&path, "   \n").unwrap();
        source.invalidate();
        assert_eq!(
            source.current(),
            "abc",
            "empty token rejected, last good kept"
        );
        std::fs::remove_file(&path).unwrap();
        source.invalidate();
        assert_eq!(source.current(), "abc", "missing file keeps last good");
        std::fs::write(&path, "def").unwrap();
        source.invalidate();
        assert_eq!(source.current(), "def");
        assert!(!format!("{source:?}").contains("def"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_token_file_at_startup_is_an_error() {
        let path = std::env::temp_dir().join(format!("ecr-empty-token-{}", std::process::id()));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            TokenSource::from_file(&path),
            Err(ClientConfigError::EmptyToken { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn ca_without_certificates_is_rejected() {
        assert!(parse_ca(b"not a pem").is_err());
    }

    /// Issue 18, item 7: `parse_ca` said why in a String; the caller can now tell an
    /// empty file from a broken one, and the message is the same.
    #[test]
    fn item_7_parse_ca_says_which_way_it_failed() {
        let none = parse_ca(b"not a pem").unwrap_err();
        assert!(matches!(none, CaError::NoCertificate));
        assert_eq!(none.to_string(), "no certificate found");
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let broken = parse_ca(broken).unwrap_err();
        assert!(matches!(broken, CaError::InvalidPem(_)), "{broken:?}");
        assert!(broken.to_string().starts_with("invalid PEM: "), "{broken}");
    }
}
