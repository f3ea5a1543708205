//! The one error type of the `aws` module. Each variant names the phase that failed, so a
//! status condition or a log line tells the operator where to look. No variant ever carries
//! a secret: bodies are summarised, never echoed, and AWS messages are cut short.

use std::fmt;

/// What an AWS service error means for the caller (retry, fix IAM, fix the clock...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The principal lacks a permission (IAM policy, SCP, trust policy).
    AccessDenied,
    /// Rate limited: retry later with backoff.
    Throttling,
    /// The session token or the web identity token has expired.
    ExpiredToken,
    /// The access key id is unknown to AWS (deleted key, wrong partition).
    UnrecognizedClient,
    /// The signature did not match: usually a wrong secret key.
    InvalidSignature,
    /// The request time is too far from AWS's clock (more than 15 minutes).
    RequestExpired,
    /// A 5xx from the service: transient, retry.
    Server,
    /// Any other error code.
    Other,
}

impl ErrorKind {
    /// Classifies an AWS error code (already cut at ':' and after '#') and HTTP status.
    pub fn classify(code: &str, status: u16) -> Self {
        match code {
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "AuthorizationError" => Self::AccessDenied,
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException" => Self::Throttling,
            "ExpiredToken" | "ExpiredTokenException" | "TokenRefreshRequired" => Self::ExpiredToken,
            "UnrecognizedClient"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidAccessKeyId" => Self::UnrecognizedClient,
            "InvalidSignature"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "IncompleteSignatureException"
            | "MissingAuthenticationToken" => Self::InvalidSignature,
            "RequestExpired" | "RequestTimeTooSkewed" | "RequestInTheFuture" => {
                Self::RequestExpired
            }
            _ if status == 429 => Self::Throttling,
            _ if status >= 500 => Self::Server,
            _ => Self::Other,
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttling | Self::Server)
    }

    /// A hint the user can act on.
    fn hint(self) -> &'static str {
        match self {
            Self::AccessDenied => "grant ecr:GetAuthorizationToken (Resource \"*\") or sts:AssumeRole to this principal",
            Self::Throttling => "AWS is rate limiting this account and region; will retry with backoff",
            Self::ExpiredToken => "the temporary credentials or web identity token expired; they will be refreshed",
            Self::UnrecognizedClient => "the access key id is unknown to AWS: check the key and the partition/region",
            Self::InvalidSignature => "the signature does not match: check the secret access key",
            Self::RequestExpired => "the local clock differs from AWS by more than 15 minutes: fix NTP",
            Self::Server => "AWS had a server error; will retry",
            Self::Other => "see the AWS error code",
        }
    }
}

/// Errors of the `aws` module.
#[derive(Debug)]
pub enum AwsError {
    /// A setting (environment variable, region, endpoint override, session name) is invalid.
    Config { setting: String, reason: String },
    /// Building or signing the request failed.
    Signing { reason: String },
    /// The connection to the endpoint failed (DNS, TCP, TLS, proxy CONNECT).
    Connect { endpoint: String, reason: String },
    /// TLS refused the endpoint's certificate (untrusted CA, wrong name, expired).
    Tls { endpoint: String, reason: String },
    /// No complete answer arrived within the request timeout.
    Timeout { endpoint: String },
    /// AWS answered with an error document we could read.
    Service {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        kind: ErrorKind,
    },
    /// The answer could not be understood (HTML from a proxy, truncated JSON, wrong shape).
    /// `what` summarises the body (content type and length), never its content.
    Unparseable {
        service: &'static str,
        status: u16,
        reason: String,
        what: String,
    },
    /// The Roles Anywhere certificate or key is unusable (unreadable, mismatched,
    /// expired, not yet valid): found before AWS is asked.
    Certificate(super::x509::CertificateError),
    /// A credential source could not produce credentials.
    Credentials {
        source: &'static str,
        reason: String,
    },
}

/// The longest AWS message we repeat; long ones are cut so logs stay readable.
const MAX_MESSAGE: usize = 300;

/// Cuts `s` to at most [`MAX_MESSAGE`] bytes on a char boundary.
pub(crate) fn short(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

// === impl AwsError ===

impl AwsError {
    /// The service error kind, if AWS answered with an error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Service { kind, .. } => Some(*kind),
            Self::Unparseable { status, .. } if *status >= 500 => Some(ErrorKind::Server),
            Self::Unparseable { status: 429, .. } => Some(ErrorKind::Throttling),
            _ => None,
        }
    }

    /// Throttling, 5xx, timeouts and connection failures are worth retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } => true,
            _ => self.kind().is_some_and(ErrorKind::is_retryable),
        }
    }

    pub(crate) fn config(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn credentials(source: &'static str, reason: impl Into<String>) -> Self {
        Self::Credentials {
            source,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { setting, reason } => write!(f, "invalid AWS setting {setting}: {reason}"),
            Self::Signing { reason } => write!(f, "signing the AWS request failed: {reason}"),
            Self::Connect { endpoint, reason } => {
                write!(f, "connecting to {endpoint} failed: {reason}")
            }
            Self::Tls { endpoint, reason } => write!(
                f,
                "TLS with {endpoint} failed: {reason} (trust its CA with AWS_CA_BUNDLE, or check for a TLS-intercepting proxy)"
            ),
            Self::Timeout { endpoint } => write!(f, "request to {endpoint} timed out"),
            Self::Service { service, status, code, message, kind } => write!(
                f,
                "{service} answered HTTP {status} {code}: {} ({})",
                short(message),
                kind.hint()
            ),
            Self::Unparseable { service, status, reason, what } => write!(
                f,
                "{service} answered HTTP {status} with a body that is not a valid answer ({what}): {reason}"
            ),
            Self::Certificate(e) => write!(f, "the IAM Roles Anywhere certificate: {e}"),
            Self::Credentials { source, reason } => {
                write!(f, "loading AWS credentials from {source} failed: {reason}")
            }
        }
    }
}

impl std::error::Error for AwsError {}
