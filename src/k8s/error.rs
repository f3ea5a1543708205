//! What can go wrong talking to the API server, by phase.

use std::fmt;

use super::types::ApiStatus;

/// Errors of the Kubernetes client. Messages never carry a token or a Secret's data.
#[derive(Debug)]
pub enum Error {
    /// The server answered non-2xx; `status` is its `metav1.Status` (synthesised from the
    /// HTTP code when the body was not one).
    Api { status: ApiStatus },
    /// The request could not be sent or its answer not read (connect, TLS, reset).
    Transport {
        source: hyper_util::client::legacy::Error,
    },
    /// The answer's body failed mid-read.
    Body {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer (or, for a watch, no event) within the timeout.
    Timeout { after: std::time::Duration },
    /// The answer was not the JSON we expected.
    Decode {
        what: &'static str,
        source: serde_json::Error,
    },
    /// An answer or a watch line larger than we accept.
    TooLarge { limit: usize },
    /// A request we could not build (bad path characters, bad header value).
    Request { message: String },
}

// === impl Error ===

impl Error {
    /// The HTTP status code, for API errors.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api { status } => Some(status.code),
            _ => None,
        }
    }

    /// 410 Gone / Expired: the resourceVersion or continue token is too old; relist.
    pub(crate) fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 with reason Conflict: our resourceVersion was stale.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { status } if status.code == 409 && status.reason != "AlreadyExists")
    }

    /// 409 with reason AlreadyExists: a create met an existing object.
    pub(crate) fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api { status } if status.code == 409 && status.reason == "AlreadyExists")
    }

    /// Worth retrying later without changing the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { status } => matches!(status.code, 429 | 500 | 502 | 503 | 504),
            Error::Transport { .. } | Error::Body { .. } | Error::Timeout { .. } => true,
            Error::Decode { .. } | Error::TooLarge { .. } | Error::Request { .. } => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api { status } => {
                write!(f, "API server answered {}", status.code)?;
                if !status.reason.is_empty() {
                    write!(f, " {}", status.reason)?;
                }
                if !status.message.is_empty() {
                    write!(f, ": {}", status.message)?;
                }
                Ok(())
            }
            Error::Transport { source } => {
                write!(f, "cannot reach the API server: {source}")?;
                // hyper-util's error hides the useful part (TLS, refused) in its source.
                let mut cause = std::error::Error::source(source);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            Error::Body { source } => write!(f, "reading the API server's answer failed: {source}"),
            Error::Timeout { after } => write!(f, "the API server did not answer within {after:?}"),
            Error::Decode { what, source } => write!(f, "cannot decode {what}: {source}"),
            Error::TooLarge { limit } => write!(f, "answer larger than {limit} bytes"),
            Error::Request { message } => write!(f, "invalid request: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport { source } => Some(source),
            Error::Body { source } => Some(source.as_ref()),
            Error::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Errors building the client's configuration at startup.
#[derive(Debug)]
pub enum ClientConfigError {
    /// Not in a pod: KUBERNETES_SERVICE_HOST/PORT are unset.
    NotInCluster,
    /// `--api-server` is not an http(s) URL.
    BadUrl { url: String, reason: String },
    /// A file (token, CA) could not be read.
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    BadCa { path: String, source: CaError },
    /// The token file is empty.
    EmptyToken { path: String },
    /// TLS could not be set up.
    Tls { reason: String },
    /// A bearer token would cross the network in clear text.
    PlainHttpToken { url: String },
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientConfigError::NotInCluster => write!(
                f,
                "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset); pass --api-server URL, \
                 for example http://127.0.0.1:8001 with `kubectl proxy`"
            ),
            ClientConfigError::BadUrl { url, reason } => write!(f, "bad --api-server {url:?}: {reason}"),
            ClientConfigError::ReadFile { path, source } => write!(f, "cannot read {path}: {source}"),
            ClientConfigError::BadCa { path, source } => write!(f, "bad CA file {path}: {source}"),
            ClientConfigError::EmptyToken { path } => write!(f, "token file {path} is empty"),
            ClientConfigError::Tls { reason } => write!(f, "TLS setup failed: {reason}"),
            ClientConfigError::PlainHttpToken { url } => write!(
                f,
                "refusing to send the --token-file token over plain http to {url}: use https \
                 with --ca-file, `kubectl proxy` on loopback, or --allow-plain-http-token"
            ),
        }
    }
}

impl std::error::Error for ClientConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientConfigError::ReadFile { source, .. } => Some(source),
            ClientConfigError::BadCa { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why PEM bytes gave no CA certificate.
#[derive(Debug)]
pub enum CaError {
    /// A PEM section could not be read.
    InvalidPem(rustls_pki_types::pem::Error),
    /// The bytes hold no certificate at all.
    NoCertificate,
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::InvalidPem(e) => write!(f, "invalid PEM: {e:?}"),
            CaError::NoCertificate => f.write_str("no certificate found"),
        }
    }
}

impl std::error::Error for CaError {}
