//! What `spec.aws.rolesAnywhere` may hold beyond the CRD schema: ARNs of the right kind
//! (the trust anchor's region is where CreateSession is called, so the profile must be
//! there too), a role the operator allows, a Secret name Kubernetes accepts, and a
//! session CreateSession grants (15m to 12h).

use std::time::Duration;

use super::fields::{format_duration, is_dns_label, is_dns_subdomain, parse_duration};
use super::spec::{RolesAnywhereSpec, SecretRef};
use super::spec_error::SpecError;
use crate::reconcile::vocab::shown;

/// CreateSession's bounds on `durationSeconds`.
pub(crate) const MIN_SESSION: Duration = Duration::from_secs(900);
pub(crate) const MAX_SESSION: Duration = Duration::from_secs(43_200);
/// The session asked for when the CR names none.
pub(crate) const DEFAULT_SESSION: Duration = Duration::from_secs(3_600);

/// The checked spec: the region CreateSession is called in, and the session's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ValidRolesAnywhere {
    pub region: String,
    pub session: Duration,
}

/// Checks `ra`; `role_ok` is the role rule shared with `spec.aws.roleArn` (well formed
/// and allowed by the operator).
pub(crate) fn validate(
    ra: &RolesAnywhereSpec,
    role_ok: impl Fn(&str) -> Result<(), SpecError>,
) -> Result<ValidRolesAnywhere, SpecError> {
    let region = arn_region(&ra.trust_anchor_arn, "trust-anchor").ok_or_else(|| {
        invalid(format!(
            "trustAnchorArn {} is not arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>",
            shown(&ra.trust_anchor_arn)
        ))
    })?;
    let profile_region = arn_region(&ra.profile_arn, "profile").ok_or_else(|| {
        invalid(format!(
            "profileArn {} is not arn:aws:rolesanywhere:<region>:<account>:profile/<id>",
            shown(&ra.profile_arn)
        ))
    })?;
    if profile_region != region {
        return Err(invalid(format!(
            "profileArn is in {profile_region} but trustAnchorArn is in {region}"
        )));
    }
    role_ok(&ra.role_arn).map_err(|e| match e {
        SpecError::RoleNotAllowed(a) => invalid(format!(
            "roleArn {} is not permitted by the operator's allowed role ARNs",
            shown(&a)
        )),
        _ => invalid(format!(
            "roleArn {} is not an IAM role ARN",
            shown(&ra.role_arn)
        )),
    })?;
    check_secret_ref(&ra.certificate_secret_ref)?;
    let session = match &ra.session_duration {
        None => DEFAULT_SESSION,
        Some(v) => parse_duration(v)
            .filter(|d| (MIN_SESSION..=MAX_SESSION).contains(d))
            .ok_or_else(|| {
                invalid(format!(
                    "sessionDuration {} is not a duration from {} to {}",
                    shown(v),
                    format_duration(MIN_SESSION),
                    format_duration(MAX_SESSION)
                ))
            })?,
    };
    Ok(ValidRolesAnywhere { region, session })
}

fn invalid(message: String) -> SpecError {
    SpecError::RolesAnywhere(message)
}

fn check_secret_ref(r: &SecretRef) -> Result<(), SpecError> {
    if !is_dns_subdomain(&r.name) {
        return Err(invalid(format!(
            "certificateSecretRef name {} is not a valid Secret name",
            shown(&r.name)
        )));
    }
    if !is_dns_label(&r.namespace) {
        return Err(invalid(format!(
            "certificateSecretRef namespace {} is not a valid namespace name",
            shown(&r.namespace)
        )));
    }
    Ok(())
}

/// `arn:<partition>:rolesanywhere:<region>:<12 digits>:<kind>/<id>`: its region.
pub(crate) fn arn_region(arn: &str, kind: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let region_ok = |r: &str| {
        !r.is_empty()
            && r.len() <= 32
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !r.starts_with('-')
            && !r.ends_with('-')
    };
    let id_ok = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[1].len() <= 16
        && parts[2] == "rolesanywhere"
        && region_ok(parts[3])
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(id_ok);
    ok.then(|| parts[3].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/7e2b6a1c-0000-4000-8000-000000000001";
    const PROFILE: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/p-1";

    fn spec() -> RolesAnywhereSpec {
        RolesAnywhereSpec {
            trust_anchor_arn: ANCHOR.into(),
            profile_arn: PROFILE.into(),
            role_arn: "arn:aws:iam::123456789012:role/edge".into(),
            certificate_secret_ref: SecretRef {
                name: "device-cert".into(),
                namespace: "ecr-creds-refresher".into(),
            },
            session_duration: None,
        }
    }

    fn any_role(_: &str) -> Result<(), SpecError> {
        Ok(())
    }

    /// README's "Edge clusters outside AWS" ECRPullSecret passes the whole validator
    /// (tests/readme_drift.rs checks the rest of that section against the CRD and itself).
    #[test]
    fn the_readme_edge_cluster_example_validates() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n## Edge clusters outside AWS")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has the section");
        // The blocks sit in a numbered list: three spaces of indent.
        let dedented: String = section
            .lines()
            .map(|l| l.strip_prefix("   ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let cr = dedented
            .split("```yaml")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .flat_map(|block| block.split("\n---"))
            .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
            .find(|doc| doc["kind"] == "ECRPullSecret")
            .expect("the section shows an ECRPullSecret");
        let cr: crate::reconcile::decide::spec::EcrPullSecret =
            serde_json::from_value(cr).expect("an ECRPullSecret");
        let valid = cr
            .spec
            .validate(&crate::reconcile::decide::validate::SpecPolicy::default())
            .expect("the validator accepts it");
        assert!(valid.aws.roles_anywhere.is_some(), "it uses Roles Anywhere");
    }

    #[test]
    fn a_valid_spec_gives_the_anchor_region_and_the_session() {
        let v = validate(&spec(), any_role).unwrap();
        assert_eq!(v.region, "eu-west-1");
        assert_eq!(v.session, DEFAULT_SESSION);
        let mut s = spec();
        s.session_duration = Some("15m".into());
        assert_eq!(
            validate(&s, any_role).unwrap().session,
            Duration::from_secs(900)
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        type Edit = fn(&mut RolesAnywhereSpec);
        let cases: &[(Edit, &str)] = &[
            (|s| s.trust_anchor_arn = PROFILE.into(), "trustAnchorArn"),
            (
                |s| {
                    s.trust_anchor_arn =
                        "arn:aws:rolesanywhere:evil.com/x:123456789012:trust-anchor/a".into()
                },
                "trustAnchorArn",
            ),
            (|s| s.profile_arn = ANCHOR.into(), "profileArn"),
            (
                |s| s.profile_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p".into(),
                "profileArn is in us-east-1",
            ),
            (
                |s| s.certificate_secret_ref.name = "Not_A_Name".into(),
                "certificateSecretRef name",
            ),
            (
                |s| s.certificate_secret_ref.namespace = "a.b".into(),
                "certificateSecretRef namespace",
            ),
            (
                |s| s.session_duration = Some("14m".into()),
                "sessionDuration",
            ),
            (
                |s| s.session_duration = Some("12h1s".into()),
                "sessionDuration",
            ),
            (
                |s| s.session_duration = Some("soon".into()),
                "sessionDuration",
            ),
        ];
        for (edit, named) in cases {
            let mut s = spec();
            edit(&mut s);
            let err = validate(&s, any_role).unwrap_err().to_string();
            assert!(err.starts_with("spec.aws.rolesAnywhere."), "{err}");
            assert!(err.contains(named), "{named}: {err}");
        }
        let err = validate(&spec(), |_| Err(SpecError::RoleArn("x".into())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rolesAnywhere.roleArn"), "{err}");
    }

    #[test]
    fn the_spec_validator_applies_the_operator_role_rules_and_one_base_identity() {
        use super::super::spec::{AwsAuth, Spec};
        use super::super::validate::SpecPolicy;
        let mut cr = Spec {
            secret_name: "pull".into(),
            namespaces: vec!["apps".into()],
            region: Some("us-east-1".into()),
            aws: Some(AwsAuth {
                roles_anywhere: Some(spec()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(cr.validate(&SpecPolicy::default()).is_ok());
        let strict = SpecPolicy {
            allowed_role_arns: vec!["arn:aws:iam::123456789012:role/other".into()],
            ..Default::default()
        };
        let err = cr.validate(&strict).unwrap_err().to_string();
        assert!(
            err.contains("rolesAnywhere.roleArn") && err.contains("not permitted"),
            "{err}"
        );
        if let Some(aws) = cr.aws.as_mut() {
            aws.credentials_secret_ref = Some(spec().certificate_secret_ref);
        }
        assert_eq!(
            cr.validate(&SpecPolicy::default()).unwrap_err(),
            SpecError::TwoBaseIdentities
        );
    }
}
