//! The device's private key, from the PEM encodings cert-manager and openssl write:
//! PKCS#8 (RSA or EC), PKCS#1 (RSA) and SEC1 (EC). ring signs RSA and P-256; this file
//! finds out which kind of key it holds and hands ring the form it takes.
//!
//! P-384 is signed by RustCrypto's `p384`: CreateSession's ECDSA signature is over SHA-256
//! whatever the curve (`AWS4-X509-ECDSA-SHA256`, as aws_signing_helper signs), and ring
//! signs P-384 only with SHA-384.

use super::certificate::{OID_EC, OID_P256, OID_P384, OID_RSA};
use super::der::{self, Reader};
use super::error::CertificateError;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::fmt;

/// RSA keys under this size are refused (AWS's and ring's floor).
const MIN_RSA_BITS: usize = 2048;

/// A private key ready to sign. Debug says which kind, never the key.
pub(crate) struct SigningKey {
    inner: Inner,
}

enum Inner {
    Rsa(RsaKeyPair),
    EcP256(EcdsaKeyPair),
    EcP384(Box<P384Key>),
}

/// p384's key zeroizes its scalar on drop; `public` is the uncompressed point, the form
/// a certificate holds.
struct P384Key {
    key: p384::ecdsa::SigningKey,
    public: Vec<u8>,
}

/// The signature algorithm's name in the Authorization header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    RsaSha256,
    EcdsaSha256,
}

impl Algorithm {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::RsaSha256 => "AWS4-X509-RSA-SHA256",
            Self::EcdsaSha256 => "AWS4-X509-ECDSA-SHA256",
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Rsa(k) => write!(
                f,
                "SigningKey(RSA {} bits, redacted)",
                k.public().modulus_len() * 8
            ),
            Inner::EcP256(_) => f.write_str("SigningKey(ECDSA P-256, redacted)"),
            Inner::EcP384(_) => f.write_str("SigningKey(ECDSA P-384, redacted)"),
        }
    }
}

// === impl SigningKey ===

impl SigningKey {
    /// Reads the first private key block of `pem`.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, CertificateError> {
        // rustls-pki-types' error names the section kind, never the bytes.
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| CertificateError::Pem {
            what: "private key",
            reason: match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block".into()
                }
                _ => "the PEM is malformed or encrypted".into(),
            },
        })?;
        let inner = match &key {
            PrivateKeyDer::Pkcs1(k) => {
                Inner::Rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(rejected)?)
            }
            PrivateKeyDer::Pkcs8(k) => from_pkcs8(k.secret_pkcs8_der())?,
            PrivateKeyDer::Sec1(k) => from_sec1(k.secret_sec1_der())?,
            _ => {
                return Err(CertificateError::UnsupportedKey(
                    "an unknown PEM key kind".into(),
                ))
            }
        };
        if let Inner::Rsa(k) = &inner {
            let bits = k.public().modulus_len() * 8;
            if bits < MIN_RSA_BITS {
                return Err(CertificateError::UnsupportedKey(format!(
                    "RSA {bits} bits (2048 and up)"
                )));
            }
        }
        Ok(Self { inner })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Rsa(_) => Algorithm::RsaSha256,
            Inner::EcP256(_) | Inner::EcP384(_) => Algorithm::EcdsaSha256,
        }
    }

    /// The public key in the form a certificate's subjectPublicKey holds it.
    pub(crate) fn public_key(&self) -> &[u8] {
        match &self.inner {
            Inner::Rsa(k) => k.public_key().as_ref(),
            Inner::EcP256(k) => k.public_key().as_ref(),
            Inner::EcP384(k) => &k.public,
        }
    }

    /// RSA PKCS#1 v1.5 or ECDSA (ASN.1 DER), both over SHA-256 of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertificateError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| CertificateError::Signing)?;
                Ok(out)
            }
            Inner::EcP256(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CertificateError::Signing),
            Inner::EcP384(k) => k.sign(message),
        }
    }
}

impl P384Key {
    /// ECDSA over SHA-256 of `message`, DER `SEQUENCE { r, s }` as ring writes it.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertificateError> {
        use p384::ecdsa::signature::hazmat::PrehashSigner;
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        let signature: p384::ecdsa::Signature = self
            .key
            .sign_prehash(digest.as_ref())
            .map_err(|_| CertificateError::Signing)?;
        let (r, s) = signature.split_bytes();
        let body = [der::write_unsigned(&r), der::write_unsigned(&s)].concat();
        Ok(der::write(der::SEQUENCE, &body))
    }
}

fn rejected(e: ring::error::KeyRejected) -> CertificateError {
    CertificateError::KeyRejected(e.to_string())
}

fn p256(pkcs8: &[u8]) -> Result<Inner, CertificateError> {
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    EcdsaKeyPair::from_pkcs8(alg, pkcs8, &SystemRandom::new())
        .map(Inner::EcP256)
        .map_err(rejected)
}

/// PKCS#8: RSA, or EC on the curve its algorithm parameters name.
fn from_pkcs8(der: &[u8]) -> Result<Inner, CertificateError> {
    match pkcs8_algorithm(der)? {
        (OID_RSA, _) => RsaKeyPair::from_pkcs8(der)
            .map(Inner::Rsa)
            .map_err(rejected),
        (OID_EC, Some(OID_P256)) => p256(der),
        (OID_EC, Some(OID_P384)) => p384(pkcs8_private_key(der)?),
        (OID_EC, Some(_)) => Err(unsupported_curve()),
        _ => Err(CertificateError::UnsupportedKey(
            "neither RSA nor ECDSA".into(),
        )),
    }
}

/// SEC1 (`EC PRIVATE KEY`): ring loads it once wrapped in PKCS#8.
fn from_sec1(sec1: &[u8]) -> Result<Inner, CertificateError> {
    match sec1_curve(sec1)? {
        Some(OID_P256) => p256(&sec1_as_pkcs8(sec1, OID_P256)),
        Some(OID_P384) => p384(sec1),
        Some(_) => Err(unsupported_curve()),
        None => Err(CertificateError::UnsupportedKey(
            "an EC PRIVATE KEY without its curve (write it with openssl ec or pkcs8)".into(),
        )),
    }
}

fn unsupported_curve() -> CertificateError {
    CertificateError::UnsupportedKey("an EC curve other than P-256 and P-384".into())
}

/// P-384 from its ECPrivateKey (SEC1): only the scalar is read; the public key is derived
/// from it, so a certificate is matched against the key that signs.
fn p384(sec1: &[u8]) -> Result<Inner, CertificateError> {
    let mut fields = Reader::new(sec1).nested(der::SEQUENCE, "ECPrivateKey")?;
    fields.expect(der::INTEGER, "ECPrivateKey.version")?;
    let scalar = fields.expect(der::OCTET_STRING, "ECPrivateKey.privateKey")?;
    let key = p384::ecdsa::SigningKey::from_slice(scalar).map_err(|_| {
        CertificateError::KeyRejected("the P-384 private key is not a valid scalar".into())
    })?;
    let public = key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    Ok(Inner::EcP384(Box::new(P384Key { key, public })))
}

/// PrivateKeyInfo's privateKey: for EC keys, an ECPrivateKey (RFC 5915 section 2).
fn pkcs8_private_key(der: &[u8]) -> Result<&[u8], CertificateError> {
    let mut info = Reader::new(der).nested(der::SEQUENCE, "PrivateKeyInfo")?;
    info.expect(der::INTEGER, "PrivateKeyInfo.version")?;
    info.expect(der::SEQUENCE, "PrivateKeyInfo.algorithm")?;
    Ok(info.expect(der::OCTET_STRING, "PrivateKeyInfo.privateKey")?)
}

/// PrivateKeyInfo's algorithm OID, and its parameter when that is an OID (the curve).
fn pkcs8_algorithm(der: &[u8]) -> Result<(&[u8], Option<&[u8]>), CertificateError> {
    let mut info = Reader::new(der).nested(der::SEQUENCE, "PrivateKeyInfo")?;
    info.expect(der::INTEGER, "PrivateKeyInfo.version")?;
    let mut algorithm = info.nested(der::SEQUENCE, "PrivateKeyInfo.algorithm")?;
    let oid = algorithm.expect(der::OID, "PrivateKeyInfo.algorithm")?;
    let curve = (algorithm.peek_tag() == Some(der::OID))
        .then(|| algorithm.expect(der::OID, "namedCurve"))
        .transpose()?;
    Ok((oid, curve))
}

/// The curve named in an ECPrivateKey's `[0] parameters`, if it has them.
fn sec1_curve(der: &[u8]) -> Result<Option<&[u8]>, CertificateError> {
    let mut key = Reader::new(der).nested(der::SEQUENCE, "ECPrivateKey")?;
    key.expect(der::INTEGER, "ECPrivateKey.version")?;
    key.expect(der::OCTET_STRING, "ECPrivateKey.privateKey")?;
    if key.peek_tag() != Some(der::CONTEXT_0) {
        return Ok(None);
    }
    let mut parameters = key.nested(der::CONTEXT_0, "ECPrivateKey.parameters")?;
    Ok(Some(parameters.expect(der::OID, "namedCurve")?))
}

/// SEC1 inside PKCS#8 (RFC 5915 section 2), the only EC form ring loads.
fn sec1_as_pkcs8(sec1: &[u8], curve: &[u8]) -> Vec<u8> {
    let algorithm = der::write(
        der::SEQUENCE,
        &[der::write(der::OID, OID_EC), der::write(der::OID, curve)].concat(),
    );
    let body = [
        der::write(der::INTEGER, &[0]),
        algorithm,
        der::write(der::OCTET_STRING, sec1),
    ]
    .concat();
    der::write(der::SEQUENCE, &body)
}
