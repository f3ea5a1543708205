//! What a registry said of a token, as the status reports it. Asking is `verify`'s
//! business.

use time::OffsetDateTime;

/// A registry's answer to a token. The strings are condition reasons and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Verdict {
    /// 200 to `GET /v2/`: pulls will authenticate.
    Verified,
    /// 401: the registry refused the token.
    Unauthorized,
    /// 403: the token is valid, the principal may not pull.
    Forbidden,
    /// The registry's certificate is not trusted.
    TlsError,
    /// No answer (DNS, TCP, proxy, timeout).
    Unreachable,
    /// An answer no registry gives.
    UnexpectedAnswer,
}

impl Verdict {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Verdict::Verified => "Verified",
            Verdict::Unauthorized => "Unauthorized",
            Verdict::Forbidden => "Forbidden",
            Verdict::TlsError => "TLSError",
            Verdict::Unreachable => "Unreachable",
            Verdict::UnexpectedAnswer => "UnexpectedAnswer",
        }
    }
}

/// One host's last check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostCheck {
    pub host: String,
    pub verdict: Verdict,
    /// Safe to show: never holds the token.
    pub message: String,
    pub checked_at: OffsetDateTime,
    /// When a failed check will be made again; `None` after a success.
    pub retry_at: Option<OffsetDateTime>,
}
