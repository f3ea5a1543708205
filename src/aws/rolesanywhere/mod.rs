//! IAM Roles Anywhere: temporary credentials for a device outside AWS, in exchange for a
//! signature made with the private key of an X.509 certificate its owner's CA issued.
//!
//! Files, bottom up: `der` (a bounds-checked DER reader), `certificate` (serial, validity
//! and public key of a certificate), `key` (PEM private keys for ring), `identity`
//! (certificate + chain + key, checked to match), `signer` (the X.509 SigV4 variant),
//! `session` (the CreateSession call), `source` (the operator-wide credential source), `secret` (the per-CR source, from a
//! watched `kubernetes.io/tls` Secret).

pub mod certificate;
pub mod der;
pub mod error;
pub mod identity;
pub mod key;
pub mod secret;
pub mod session;
pub mod signer;
pub mod source;

pub use certificate::{Certificate, PublicKeyKind};
pub use error::CertificateError;
pub use identity::X509Identity;
pub use key::{Algorithm, SigningKey};
pub use secret::{SecretCertificate, SecretRolesAnywhere};
pub use session::{create_session, SessionParams};
pub use signer::sign_request;
pub use source::RolesAnywhereSource;
