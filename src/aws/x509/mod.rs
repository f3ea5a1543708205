//! X.509 identities for IAM Roles Anywhere: a certificate, its chain and the private key
//! it certifies, read from PEM and checked to match. Nothing here calls AWS, so it sits
//! on the ground floor of `aws/` and `AwsError` may carry its [`CertificateError`].
//!
//! Files, bottom up: `der` (a bounds-checked DER reader), `certificate` (serial, validity
//! and public key of a certificate), `key` (PEM private keys for ring), `identity`
//! (certificate + chain + key, checked to match), `error`.

pub(crate) mod certificate;
pub(crate) mod der;
pub(crate) mod error;
pub(crate) mod identity;
pub(crate) mod key;

pub(crate) use error::CertificateError;
pub(crate) use identity::X509Identity;
