//! A device certificate kept in a `kubernetes.io/tls` Secret, for the per-CR Roles
//! Anywhere source, read as a [`WatchedSecret`] (as credentials Secrets are): a renewed
//! certificate signs the next session.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use time::OffsetDateTime;

use super::session::{create_session, SessionParams};
use crate::aws::context::AwsContext;
use crate::aws::error::AwsError;
use crate::aws::watched_secret::{Published, WatchedSecret};
use crate::aws::x509::error::CertificateError;
use crate::aws::x509::identity::{X509Identity, Zeroing};

/// The Secret keys cert-manager writes (`ca.crt`, the issuer, is not sent: the trust
/// anchor holds it).
pub(crate) const TLS_CRT: &str = "tls.crt";
pub(crate) const TLS_KEY: &str = "tls.key";

/// The latest read of the Secret: None until read; else the identity, or why there is
/// none. Neither side ever holds key bytes in a form that prints.
pub(crate) type CertificateState = Published<Arc<X509Identity>, Unusable>;

/// Why a certificate Secret gives no identity.
#[derive(Clone, Debug)]
pub(crate) enum Unusable {
    /// The Secret is not there (the message names it, for a CR granted its use).
    Missing(String),
    /// It is there but its certificate or key cannot sign (a message with no key byte).
    Invalid(CertificateError),
}

/// The reading end; cheap to clone.
pub(crate) type SecretCertificate = WatchedSecret<Arc<X509Identity>, Unusable>;

// === impl SecretCertificate ===

impl SecretCertificate {
    /// The current identity, or why there is none.
    pub(crate) fn current(&self) -> Result<Arc<X509Identity>, AwsError> {
        self.with_latest(|latest| match latest {
            Some(Ok(identity)) => Ok(identity.clone()),
            Some(Err(Unusable::Invalid(e))) => Err(AwsError::Certificate(e.clone())),
            Some(Err(Unusable::Missing(reason))) => Err(self.unusable(reason)),
            None => Err(self.not_read_yet()),
        })
    }

    /// A fingerprint of what the Secret holds now (a hash of the certificate's DER, or
    /// of why it is unusable), so caches notice a renewal, and a second broken version
    /// is judged afresh rather than from the first one's remembered failure.
    pub(crate) fn fingerprint(&self) -> Option<String> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let read = self.with_latest(|latest| {
            match latest? {
                Ok(identity) => identity.certificate().der().hash(&mut hasher),
                Err(Unusable::Missing(m)) => ("missing", m).hash(&mut hasher),
                // The message names what is wrong, never a key byte.
                Err(Unusable::Invalid(e)) => ("invalid", e.to_string()).hash(&mut hasher),
            }
            Some(())
        });
        read?;
        Some(format!("certificate:{:016x}", hasher.finish()))
    }

    /// The certificate's notAfter, for the expiry metric (expired or not).
    pub(crate) fn not_after(&self) -> Option<OffsetDateTime> {
        self.with_latest(|latest| match latest {
            Some(Ok(identity)) => Some(identity.certificate().not_after()),
            _ => None,
        })
    }
}

/// Reads `tls.crt` and `tls.key` from a Secret's `data` (base64, as the API returns it).
/// The decoded key is overwritten once parsed; errors name a key, never a value.
pub(crate) fn identity_from_secret_data(
    data: &BTreeMap<String, String>,
) -> Result<X509Identity, CertificateError> {
    let read = |key: &'static str| -> Result<Zeroing, CertificateError> {
        let pem = |reason: &str| CertificateError::Pem {
            what: key,
            reason: reason.to_string(),
        };
        let encoded = data
            .get(key)
            .ok_or_else(|| pem("missing from the Secret"))?;
        let raw = STANDARD
            .decode(encoded.trim())
            .map_err(|_| pem("not valid base64"))?;
        Ok(Zeroing(raw))
    };
    let certificates = read(TLS_CRT)?;
    let key = read(TLS_KEY)?;
    X509Identity::from_pem(&certificates.0, &key.0)
}

/// The per-CR Roles Anywhere source: a session for `params`, signed with the Secret's
/// certificate as it is now.
#[derive(Clone, Debug)]
pub(crate) struct SecretRolesAnywhere {
    pub params: SessionParams,
    /// The trust anchor's region: CreateSession is called there.
    pub region: String,
    pub certificate: SecretCertificate,
}

// === impl SecretRolesAnywhere ===

impl SecretRolesAnywhere {
    /// For caches and logs: the Secret, trust anchor and role, no secret.
    pub(crate) fn identity(&self) -> String {
        format!(
            "roles-anywhere:{}:{}>{}",
            self.certificate.origin(),
            self.params.trust_anchor_arn,
            self.params.role_arn
        )
    }

    /// Refuses a certificate outside its validity before AWS is asked; else a session.
    pub(crate) async fn load(&self, ctx: &AwsContext) -> Result<Credentials, AwsError> {
        let identity = self.certificate.current()?;
        session(ctx, &identity, &self.params, &self.region).await
    }
}

/// A session signed by `identity`, once its validity is checked against the clock.
pub(super) async fn session(
    ctx: &AwsContext,
    identity: &X509Identity,
    params: &SessionParams,
    region: &str,
) -> Result<Credentials, AwsError> {
    let now = SystemTime::now();
    identity
        .certificate()
        .check_validity(now.into())
        .map_err(AwsError::Certificate)?;
    let endpoint = ctx.endpoints.rolesanywhere(region)?;
    create_session(&ctx.http, &endpoint, identity, params, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_undecodable_keys_are_named_without_values() {
        let mut data = BTreeMap::new();
        let err = identity_from_secret_data(&data).unwrap_err().to_string();
        assert_eq!(err, "tls.crt: missing from the Secret");
        data.insert(TLS_CRT.to_string(), STANDARD.encode("not a certificate"));
        data.insert(TLS_KEY.to_string(), "%%secret-key-bytes%%".to_string());
        let err = identity_from_secret_data(&data).unwrap_err().to_string();
        assert!(!err.contains("secret-key-bytes"), "{err}");
    }

    #[test]
    fn the_reader_sees_each_version_and_why_none_is_usable() {
        let (tx, cert) = SecretCertificate::channel("edge/device-cert");
        let err = cert.current().unwrap_err().to_string();
        assert!(
            err.contains("edge/device-cert has not been read yet"),
            "{err}"
        );
        tx.send_replace(Some(Err(Unusable::Missing("not found".into()))));
        assert!(matches!(cert.current(), Err(AwsError::Credentials { .. })));
        tx.send_replace(Some(Err(Unusable::Invalid(CertificateError::KeyMismatch))));
        assert!(matches!(
            cert.current(),
            Err(AwsError::Certificate(CertificateError::KeyMismatch))
        ));
        let mismatch = cert.fingerprint();
        assert!(mismatch.is_some());
        tx.send_replace(Some(Err(Unusable::Invalid(CertificateError::Signing))));
        assert_ne!(
            cert.fingerprint(),
            mismatch,
            "another broken version is news"
        );
        assert_eq!(cert.not_after(), None);
    }
}
