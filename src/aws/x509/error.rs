//! The errors of loading and using an X.509 identity. None carries key material: ring's
//! key rejections are fixed descriptions, and PEM and DER errors name a field, not bytes.

use super::der::DerError;
use std::fmt;
use time::OffsetDateTime;

#[derive(Clone)]
pub enum CertificateError {
    /// A file could not be read (the path and the I/O error, never the content).
    Read { path: String, reason: String },
    /// No usable PEM block of the kind wanted.
    Pem { what: &'static str, reason: String },
    /// The certificate's DER is malformed.
    Der(DerError),
    /// A key type, size or curve that CreateSession signing does not support.
    UnsupportedKey(String),
    /// ring refused the private key (a fixed description, e.g. "InvalidEncoding").
    KeyRejected(String),
    /// The private key is not the one the certificate certifies.
    KeyMismatch,
    /// The certificate's notAfter has passed: AWS would refuse it.
    Expired {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    /// The certificate's notBefore is still ahead (a clock or an issuer problem).
    NotYetValid {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    /// ring could not make the signature.
    Signing,
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, reason } => write!(f, "reading {path} failed: {reason}"),
            Self::Pem { what, reason } => write!(f, "{what}: {reason}"),
            Self::Der(e) => write!(f, "the certificate is not valid DER: {e}"),
            Self::UnsupportedKey(what) => write!(f, "unsupported private key: {what}"),
            Self::KeyRejected(why) => write!(f, "the private key was refused: {why}"),
            Self::KeyMismatch => f.write_str("the private key does not match the certificate"),
            Self::Expired {
                not_before,
                not_after,
            } => write!(
                f,
                "the certificate expired at {} (valid from {})",
                rfc3339(*not_after),
                rfc3339(*not_before)
            ),
            Self::NotYetValid {
                not_before,
                not_after,
            } => write!(
                f,
                "the certificate is not valid before {} (valid until {})",
                rfc3339(*not_before),
                rfc3339(*not_after)
            ),
            Self::Signing => f.write_str("signing with the private key failed"),
        }
    }
}

/// Debug is the message: no field holds more, and a derived Debug would add code for
/// every nested type to a binary with a size budget.
impl fmt::Debug for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateError({self})")
    }
}

impl std::error::Error for CertificateError {}

/// `2026-12-06T04:00:00Z`: the form status messages use elsewhere.
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl From<DerError> for CertificateError {
    fn from(e: DerError) -> Self {
        Self::Der(e)
    }
}
