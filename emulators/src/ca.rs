//! A throwaway certificate authority: the emulated API server's TLS and the test
//! registry's are issued by one made per run, so clients are tested against real TLS
//! with a custom trust root.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA that exists for one run.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

// === impl TestCa ===

impl TestCa {
    /// A self-signed CA named `name`, with a fresh key.
    pub fn new(name: &str) -> Result<TestCa, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        self.issuer.der()
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key.
    pub fn issue(
        &self,
        names: &[&str],
        common_name: &str,
    ) -> Result<(Certificate, KeyPair), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}
