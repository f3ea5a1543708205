//! IAM Roles Anywhere: temporary credentials for a device outside AWS, in exchange for a
//! signature made with the private key of an X.509 certificate its owner's CA issued.
//!
//! Files, bottom up: `signer` (the X.509 SigV4 variant), `session` (the CreateSession
//! call), `source` (the operator-wide credential source), `secret` (the per-CR source, from
//! a watched `kubernetes.io/tls` Secret). The identity itself (certificate, chain, key) is
//! `aws::x509`.

pub mod secret;
pub mod session;
pub mod signer;
pub mod source;

#[cfg(test)]
mod emulated_tests;

pub use secret::{SecretCertificate, SecretRolesAnywhere};
pub use session::{create_session, SessionParams};
pub use signer::sign_request;
pub use source::RolesAnywhereSource;
