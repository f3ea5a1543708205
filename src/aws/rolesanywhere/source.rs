//! The operator-wide Roles Anywhere credential source: ARNs from the environment, and a
//! certificate and key from files (typically a cert-manager Secret mounted in the pod).
//! The files are read again for every new session, so a renewed certificate is used as
//! soon as the kubelet has updated the mount, with no restart.

use super::session::{
    SessionParams, DEFAULT_DURATION_SECONDS, MAX_DURATION_SECONDS, MIN_DURATION_SECONDS,
};
use crate::aws::context::AwsContext;
use crate::aws::endpoint::validate_region;
use crate::aws::env::AwsEnv;
use crate::aws::error::AwsError;
use crate::aws::sts::validate_role_arn;
use crate::aws::x509::X509Identity;
use aws_credential_types::Credentials;
use std::path::PathBuf;

pub(crate) const TRUST_ANCHOR_ARN: &str = "AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN";
pub(crate) const PROFILE_ARN: &str = "AWS_ROLESANYWHERE_PROFILE_ARN";
pub(crate) const ROLE_ARN: &str = "AWS_ROLESANYWHERE_ROLE_ARN";
/// PEM: the device certificate, then any intermediates (cert-manager's `tls.crt`).
pub(crate) const CERTIFICATE: &str = "AWS_ROLESANYWHERE_CERTIFICATE";
/// PEM private key (cert-manager's `tls.key`).
pub(crate) const PRIVATE_KEY: &str = "AWS_ROLESANYWHERE_PRIVATE_KEY";
pub(crate) const SESSION_DURATION: &str = "AWS_ROLESANYWHERE_SESSION_DURATION";

/// Where the certificate is, and which session to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RolesAnywhereSource {
    pub params: SessionParams,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// The trust anchor's region: CreateSession is called there.
    pub region: String,
}

// === impl RolesAnywhereSource ===

impl RolesAnywhereSource {
    /// None when no Roles Anywhere variable is set; an error naming the first problem
    /// when some are set but not all, or one is malformed.
    pub(crate) fn from_env(env: &AwsEnv) -> Result<Option<Self>, AwsError> {
        let names = [
            TRUST_ANCHOR_ARN,
            PROFILE_ARN,
            ROLE_ARN,
            CERTIFICATE,
            PRIVATE_KEY,
        ];
        if names.iter().all(|n| env.get(n).is_none()) {
            return Ok(None);
        }
        let required = |name: &'static str| {
            env.get(name)
                .map(str::to_string)
                .ok_or_else(|| AwsError::config(name, "is required by the roles-anywhere source"))
        };
        let trust_anchor_arn = required(TRUST_ANCHOR_ARN)?;
        let profile_arn = required(PROFILE_ARN)?;
        let role_arn = required(ROLE_ARN)?;
        let region = rolesanywhere_arn_region(TRUST_ANCHOR_ARN, &trust_anchor_arn, "trust-anchor")?;
        let profile_region = rolesanywhere_arn_region(PROFILE_ARN, &profile_arn, "profile")?;
        if profile_region != region {
            return Err(AwsError::config(
                PROFILE_ARN,
                format!("is in {profile_region} but the trust anchor is in {region}"),
            ));
        }
        validate_role_arn(&role_arn)?;
        let duration_seconds = match env.get(SESSION_DURATION) {
            None => DEFAULT_DURATION_SECONDS,
            Some(v) => v
                .parse()
                .ok()
                .filter(|d| (MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(d))
                .ok_or_else(|| {
                    AwsError::config(
                        SESSION_DURATION,
                        format!("{v:?} is not 900 to 43200 seconds"),
                    )
                })?,
        };
        Ok(Some(Self {
            params: SessionParams {
                trust_anchor_arn,
                profile_arn,
                role_arn,
                duration_seconds,
            },
            certificate: PathBuf::from(required(CERTIFICATE)?),
            private_key: PathBuf::from(required(PRIVATE_KEY)?),
            region,
        }))
    }

    /// A stable description for caches and logs: the trust anchor and role, no secret.
    pub(crate) fn identity(&self) -> String {
        format!(
            "roles-anywhere:{}>{}",
            self.params.trust_anchor_arn, self.params.role_arn
        )
    }

    /// Reads the certificate and key afresh, refuses a certificate outside its validity
    /// (before AWS is asked), and creates a session.
    pub(crate) async fn load(&self, ctx: &AwsContext) -> Result<Credentials, AwsError> {
        let identity = X509Identity::read(&self.certificate, &self.private_key)
            .map_err(AwsError::Certificate)?;
        ctx.certificate_seen
            .seen(identity.certificate().not_after());
        super::secret::session(ctx, &identity, &self.params, &self.region).await
    }
}

/// `arn:<partition>:rolesanywhere:<region>:<account>:<kind>/<id>`: its region.
fn rolesanywhere_arn_region(setting: &str, arn: &str, kind: &str) -> Result<String, AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "rolesanywhere"
        && validate_region(parts[3]).is_ok()
        && !parts[4].is_empty()
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty());
    if ok {
        Ok(parts[3].to_string())
    } else {
        Err(AwsError::config(
            setting,
            format!(
                "{arn:?} is not of the form arn:aws:rolesanywhere:<region>:<account>:{kind}/<id>"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/ta-1";
    const PROFILE: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/p-1";
    const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";

    fn env(extra: &[(&str, &str)]) -> AwsEnv {
        let mut pairs = vec![
            (TRUST_ANCHOR_ARN, ANCHOR),
            (PROFILE_ARN, PROFILE),
            (ROLE_ARN, ROLE),
            (CERTIFICATE, "/certs/tls.crt"),
            (PRIVATE_KEY, "/certs/tls.key"),
        ];
        pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        AwsEnv::from_pairs(&pairs)
    }

    #[test]
    fn the_source_comes_from_the_environment_with_the_anchor_region() {
        assert_eq!(
            RolesAnywhereSource::from_env(&AwsEnv::default()).unwrap(),
            None
        );
        let s = RolesAnywhereSource::from_env(&env(&[])).unwrap().unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.params.duration_seconds, 3600);
        assert_eq!(s.certificate, PathBuf::from("/certs/tls.crt"));
        let s = RolesAnywhereSource::from_env(&env(&[(SESSION_DURATION, "900")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.params.duration_seconds, 900);
    }

    #[test]
    fn missing_or_malformed_settings_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(PRIVATE_KEY, "")], PRIVATE_KEY),
            (
                &[(TRUST_ANCHOR_ARN, "arn:aws:iam::1:role/x")],
                TRUST_ANCHOR_ARN,
            ),
            (
                &[(
                    TRUST_ANCHOR_ARN,
                    "arn:aws:rolesanywhere:eu-west-1:123:profile/p",
                )],
                TRUST_ANCHOR_ARN,
            ),
            (
                &[(
                    PROFILE_ARN,
                    "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p",
                )],
                PROFILE_ARN,
            ),
            (
                &[(PROFILE_ARN, "arn:aws:rolesanywhere:evil.com/x:1:profile/p")],
                PROFILE_ARN,
            ),
            (&[(ROLE_ARN, "arn:aws:iam::1:user/bob")], "role ARN"),
            (&[(SESSION_DURATION, "60")], SESSION_DURATION),
            (&[(SESSION_DURATION, "43201")], SESSION_DURATION),
        ];
        for (extra, named) in cases {
            let err = RolesAnywhereSource::from_env(&env(extra)).unwrap_err();
            assert!(err.to_string().contains(named), "{extra:?}: {err}");
        }
    }
}
