//! How to reach and authenticate to the API server: in cluster from the pod's
//! service-account files, or out of cluster from flags.

use std::path::Path;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::auth::{self, TokenSource};
use super::error::ClientConfigError;

/// Default per-request timeout (connect, send, read the whole answer).
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// client-go's limit on Retry-After driven retries.
pub(crate) const MAX_RETRIES: u32 = 10;

/// HTTP/2 keep-alive: a ping after this long, the connection closed when the ping is not
/// answered within [`H2_PING_TIMEOUT`] (client-go's ReadIdleTimeout and PingTimeout).
pub(crate) const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const H2_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// `User-Agent` of every request; [`ClientConfig::with_identity`] appends the replica.
pub(crate) const DEFAULT_USER_AGENT: &str =
    concat!("ecr-creds-refresher/", env!("CARGO_PKG_VERSION"));

/// How to reach and authenticate to the API server.
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    /// `scheme://host:port`, optionally with a path prefix; no trailing slash.
    pub url: String,
    pub token: Option<TokenSource>,
    /// Trusted roots for https. `None` trusts the public web PKI (only out of cluster).
    pub ca: Option<Vec<CertificateDer<'static>>>,
    pub request_timeout: Duration,
    pub max_retries: u32,
    /// Shown in the API server's audit log, so replicas can be told apart.
    pub user_agent: http::HeaderValue,
    /// HTTP/2 keep-alive: a PING when the connection has been silent this long, and the
    /// connection closed when its ACK takes longer than `h2_ping_timeout`.
    pub h2_ping_interval: Duration,
    pub h2_ping_timeout: Duration,
}

// === impl ClientConfig ===

impl ClientConfig {
    /// A config for `url` with no auth and the defaults.
    pub(crate) fn new(url: &str) -> Result<Self, ClientConfigError> {
        let url = url.trim_end_matches('/').to_string();
        let uri: http::Uri =
            url.parse()
                .map_err(|e: http::uri::InvalidUri| ClientConfigError::BadUrl {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(ClientConfigError::BadUrl {
                    url,
                    reason: "the scheme must be http or https".to_string(),
                })
            }
        }
        if uri.host().is_none() {
            return Err(ClientConfigError::BadUrl {
                url,
                reason: "no host".to_string(),
            });
        }
        Ok(ClientConfig {
            url,
            token: None,
            ca: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: MAX_RETRIES,
            user_agent: http::HeaderValue::from_static(DEFAULT_USER_AGENT),
            h2_ping_interval: H2_PING_INTERVAL,
            h2_ping_timeout: H2_PING_TIMEOUT,
        })
    }

    /// `ecr-creds-refresher/<version> (<identity>)`: which replica sent a request, in
    /// the audit log. An identity that cannot go in a header keeps the plain agent.
    #[must_use]
    pub(crate) fn with_identity(mut self, identity: &str) -> Self {
        if let Ok(v) = http::HeaderValue::from_str(&format!("{DEFAULT_USER_AGENT} ({identity})")) {
            self.user_agent = v;
        }
        self
    }

    /// In a pod: KUBERNETES_SERVICE_HOST/PORT and the mounted service-account files.
    pub(crate) fn in_cluster() -> Result<Self, ClientConfigError> {
        let url = auth::in_cluster_url(|k| std::env::var(k).ok())?;
        let dir = Path::new(auth::SERVICE_ACCOUNT_DIR);
        let mut cfg = ClientConfig::new(&url)?;
        cfg.token = Some(TokenSource::from_file(dir.join("token"))?);
        cfg.ca = Some(auth::load_ca(&dir.join("ca.crt"))?);
        Ok(cfg)
    }

    /// Out of cluster: `--api-server`, `--token-file`, `--ca-file`. A plain http URL is
    /// accepted so `kubectl proxy` can carry any kubeconfig's auth, but a token goes over
    /// plain http only to loopback unless `allow_plain_http_token` says otherwise: anyone
    /// on the path could read it and act as the operator.
    pub(crate) fn out_of_cluster(
        api_server: &str,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
        allow_plain_http_token: bool,
    ) -> Result<Self, ClientConfigError> {
        let mut cfg = ClientConfig::new(api_server)?;
        if token_file.is_some() && !allow_plain_http_token && !cfg.is_private_transport() {
            return Err(ClientConfigError::PlainHttpToken { url: cfg.url });
        }
        if let Some(path) = token_file {
            cfg.token = Some(TokenSource::from_file(path)?);
        }
        if let Some(path) = ca_file {
            cfg.ca = Some(auth::load_ca(path)?);
        }
        Ok(cfg)
    }
}

impl ClientConfig {
    /// https, or plain http to a loopback address.
    fn is_private_transport(&self) -> bool {
        let Ok(uri) = self.url.parse::<http::Uri>() else {
            return false;
        };
        if uri.scheme_str() == Some("https") {
            return true;
        }
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        assert!(ClientConfig::new("ftp://x").is_err());
        assert!(ClientConfig::new("not a url").is_err());
        assert!(ClientConfig::new("http://127.0.0.1:8001/").is_ok());
    }

    /// Hardening finding 10: the bearer token was sent over plain http to a remote host.
    #[test]
    fn finding_10_no_bearer_token_over_plain_http_to_another_host() {
        let dir = std::env::temp_dir().join(format!("finding10-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "bearer-token-value").unwrap();
        let err = ClientConfig::out_of_cluster("http://192.0.2.10:8080", Some(&token), None, false)
            .unwrap_err();
        assert!(
            matches!(err, crate::k8s::ClientConfigError::PlainHttpToken { .. }),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_token_is_sent_over_plain_http_only_to_loopback_unless_allowed() {
        let dir = std::env::temp_dir().join(format!("ecr-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "t0ken").unwrap();
        for ok in [
            "http://127.0.0.1:8001",
            "http://localhost:8001",
            "http://[::1]:8001",
            "https://api.example:6443",
        ] {
            assert!(
                ClientConfig::out_of_cluster(ok, Some(&token), None, false).is_ok(),
                "{ok}"
            );
        }
        let err = ClientConfig::out_of_cluster("http://10.0.0.1:8080", Some(&token), None, false)
            .unwrap_err();
        assert!(
            matches!(err, ClientConfigError::PlainHttpToken { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("t0ken"));
        assert!(
            ClientConfig::out_of_cluster("http://10.0.0.1:8080", Some(&token), None, true).is_ok()
        );
        assert!(ClientConfig::out_of_cluster("http://10.0.0.1:8080", None, None, false).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
