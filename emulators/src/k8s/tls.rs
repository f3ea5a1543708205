//! A throwaway CA and a server certificate for 127.0.0.1/localhost, generated per emulator,
//! so clients are tested against real TLS with a custom trust root.

use std::sync::Arc;

use crate::ca::TestCa;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why TLS setup failed.
#[derive(Debug)]
pub(crate) enum TlsError {
    Generate(rcgen::Error),
    Config(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Generate(e) => {
                write!(f, "generating the test CA and server certificate: {e}")
            }
            TlsError::Config(e) => write!(f, "building the TLS server configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The server side of the emulator's TLS: its config and the CA PEM clients must trust.
pub(crate) struct TlsMaterial {
    pub server_config: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
}

pub(crate) fn generate() -> Result<TlsMaterial, TlsError> {
    let ca = TestCa::new("k8s-emulator-ca").map_err(TlsError::Generate)?;
    let (cert, key) = ca
        .issue(
            &["localhost", "127.0.0.1", "kubernetes.default.svc"],
            "kube-apiserver",
        )
        .map_err(TlsError::Generate)?;

    let chain = vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())];
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(TlsError::Config)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        server_config: Arc::new(cfg),
        ca_pem: ca.pem(),
    })
}
