//! Devices' certificates for the IAM Roles Anywhere tests: a CA of the test's own (the
//! trust anchor), optional intermediates, and device certificates with chosen keys,
//! serials and validity, in the PEM shapes cert-manager writes (`tls.crt` leaf first,
//! then intermediates; `tls.key`; `ca.crt`).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use time::OffsetDateTime;

/// Throwaway keys (see fixtures/rolesanywhere/README.md); ring cannot generate RSA keys.
pub const RSA_2048_PKCS8: &str = include_str!("../fixtures/rolesanywhere/rsa2048.pkcs8.pem");
/// The same RSA key as [`RSA_2048_PKCS8`], in PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub const RSA_2048_PKCS1: &str = include_str!("../fixtures/rolesanywhere/rsa2048.pkcs1.pem");
/// An RSA key too short to be accepted (1024 bits), PKCS#8.
pub const RSA_1024_PKCS8: &str = include_str!("../fixtures/rolesanywhere/rsa1024.pkcs8.pem");
/// An ECDSA P-256 key, PKCS#8.
pub const P256_PKCS8: &str = include_str!("../fixtures/rolesanywhere/p256.pkcs8.pem");
/// The same P-256 key as [`P256_PKCS8`], in SEC1 (`BEGIN EC PRIVATE KEY`).
pub const P256_SEC1: &str = include_str!("../fixtures/rolesanywhere/p256.sec1.pem");
/// An ECDSA P-384 key, PKCS#8.
pub const P384_PKCS8: &str = include_str!("../fixtures/rolesanywhere/p384.pkcs8.pem");
/// The same P-384 key as [`P384_PKCS8`], in SEC1 (`BEGIN EC PRIVATE KEY`).
pub const P384_SEC1: &str = include_str!("../fixtures/rolesanywhere/p384.sec1.pem");

/// A certificate authority made for one test.
pub struct DeviceCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// PEM of the CAs between this one and the root, this one first (empty for a root).
    chain_pem: String,
}

/// One device certificate and what signing with it needs.
#[derive(Clone, Debug)]
pub struct DeviceCert {
    /// The leaf, then the intermediates (cert-manager's `tls.crt`).
    pub cert_pem: String,
    /// The leaf alone, DER (what the `X-Amz-X509` header carries, base64).
    pub cert_der: Vec<u8>,
    /// The key as given (any encoding).
    pub key_pem: String,
    /// The serial in decimal, as the credential scope carries it.
    pub serial: String,
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct DeviceSpec<'a> {
    /// PKCS#8 PEM of the device key (rcgen signs with it).
    pub key_pkcs8: &'a str,
    /// The same key in the encoding the device stores (PKCS#1, SEC1 or PKCS#8).
    pub key_pem: &'a str,
    /// The subject's CN.
    pub common_name: &'a str,
    /// The certificate serial number.
    pub serial: u64,
    /// Start of validity; set it ahead to issue a not-yet-valid certificate.
    pub not_before: OffsetDateTime,
    /// End of validity; set it behind to issue an expired certificate.
    pub not_after: OffsetDateTime,
    /// keyUsage digitalSignature (true), or keyEncipherment only: a certificate that
    /// must not sign.
    pub digital_signature: bool,
}

impl<'a> DeviceSpec<'a> {
    /// Valid from an hour ago for a day, with `key` stored as given.
    pub fn new(key_pkcs8: &'a str, key_pem: &'a str, serial: u64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            key_pkcs8,
            key_pem,
            common_name: "edge-device-1",
            serial,
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(1),
            digital_signature: true,
        }
    }
}

// === impl DeviceCa ===

impl DeviceCa {
    /// A self-signed root (ECDSA P-256), valid from a day ago for a year.
    pub fn root(name: &str) -> Result<Self, rcgen::Error> {
        let issuer = CertifiedIssuer::self_signed(ca_params(name)?, KeyPair::generate()?)?;
        Ok(Self {
            issuer,
            chain_pem: String::new(),
        })
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, name: &str) -> Result<Self, rcgen::Error> {
        let issuer =
            CertifiedIssuer::signed_by(ca_params(name)?, KeyPair::generate()?, &self.issuer)?;
        let chain_pem = format!("{}{}", issuer.pem(), self.chain_pem);
        Ok(Self { issuer, chain_pem })
    }

    /// An "intermediate" whose certificate is not a CA's (no basic constraints CA, no
    /// keyCertSign): what it signs must not chain.
    pub fn impostor(&self, name: &str) -> Result<Self, rcgen::Error> {
        let mut params = ca_params(name)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::signed_by(params, KeyPair::generate()?, &self.issuer)?;
        let chain_pem = format!("{}{}", issuer.pem(), self.chain_pem);
        Ok(Self { issuer, chain_pem })
    }

    /// This CA's certificate, PEM (`ca.crt`, or the trust anchor's certificate).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// This CA's certificate, DER ([`crate::aws::RolesAnywhereConfig::anchor_der`]).
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A device certificate (digitalSignature, clientAuth) for `spec`.
    pub fn issue(&self, spec: &DeviceSpec<'_>) -> Result<DeviceCert, rcgen::Error> {
        let key = KeyPair::from_pem(spec.key_pkcs8)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name);
        params.serial_number = Some(SerialNumber::from(spec.serial));
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.key_usages = vec![if spec.digital_signature {
            KeyUsagePurpose::DigitalSignature
        } else {
            KeyUsagePurpose::KeyEncipherment
        }];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(DeviceCert {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            cert_der: cert.der().to_vec(),
            key_pem: spec.key_pem.to_string(),
            serial: spec.serial.to_string(),
        })
    }
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    Ok(params)
}
