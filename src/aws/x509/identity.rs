//! A device identity: the certificate, its chain and the private key, checked to belong
//! together when loaded, so a mismatched pair fails here and not as an AWS 403.

use super::certificate::{Certificate, PublicKeyKind};
use super::error::CertificateError;
use super::key::SigningKey;
use std::path::Path;

/// What signs CreateSession.
#[derive(Debug)]
pub(crate) struct X509Identity {
    certificate: Certificate,
    /// The intermediates' DER, leaf's issuer first (sent as `X-Amz-X509-Chain`).
    chain: Vec<Vec<u8>>,
    key: SigningKey,
}

// === impl X509Identity ===

impl X509Identity {
    /// From a PEM bundle (leaf, then intermediates) and a PEM private key.
    pub(crate) fn from_pem(certificates: &[u8], key: &[u8]) -> Result<Self, CertificateError> {
        let (certificate, chain) = Certificate::from_pem_bundle(certificates)?;
        let key = SigningKey::from_pem(key)?;
        if matches!(certificate.key_kind(), PublicKeyKind::Other) {
            return Err(CertificateError::UnsupportedKey(
                "the certificate's key is neither RSA nor ECDSA P-256".into(),
            ));
        }
        if certificate.public_key() != key.public_key() {
            return Err(CertificateError::KeyMismatch);
        }
        Ok(Self {
            certificate,
            chain,
            key,
        })
    }

    /// Reads both files now: a certificate renewed on disk is picked up by the next call.
    /// The reads block: two small files of a Secret volume, once per session (as the
    /// Kubernetes token file is read), cost less than a blocking-pool round trip.
    pub(crate) fn read(certificate: &Path, key: &Path) -> Result<Self, CertificateError> {
        let certificates = read_pem(certificate)?;
        let key_pem = Zeroing(read_pem(key)?.into_bytes());
        Self::from_pem(certificates.as_bytes(), &key_pem.0)
    }

    pub(crate) fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    pub(crate) fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }
}

fn read_pem(path: &Path) -> Result<String, CertificateError> {
    std::fs::read_to_string(path).map_err(|e| CertificateError::Read {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// Key file bytes, overwritten when dropped so the PEM does not linger in freed memory.
pub(crate) struct Zeroing(pub(crate) Vec<u8>);

impl Drop for Zeroing {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}
