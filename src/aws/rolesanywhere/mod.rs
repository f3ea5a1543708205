//! IAM Roles Anywhere: temporary credentials for a device outside AWS, in exchange for a
//! signature made with the private key of an X.509 certificate its owner's CA issued.
//!
//! Files, bottom up: `signer` (the X.509 SigV4 variant), `session` (the CreateSession
//! call), `source` (the operator-wide credential source), `secret` (the per-CR source, from
//! a watched `kubernetes.io/tls` Secret). The identity itself (certificate, chain, key) is
//! `aws::x509`.

pub(crate) mod secret;
pub(crate) mod session;
pub(crate) mod signer;
pub(crate) mod source;

#[cfg(test)]
mod emulated_tests;

pub(crate) use secret::{SecretCertificate, SecretRolesAnywhere};
pub(crate) use session::SessionParams;
pub(crate) use source::RolesAnywhereSource;
