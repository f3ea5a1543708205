//! Whether a CR may use the identity its spec names: each Secret it signs with must grant
//! it (outside the operator's namespace), and each IAM role it assumes must be granted to
//! it by a cluster admin (`AwsAuth::signs_with` and `assumes` name them). Pure: the
//! reconciler reads the grants, this judges them.

use super::spec::SecretRef;
use crate::reconcile::vocab::{Reason, GRANT_ANNOTATION, ROLE_GRANTS_CONFIGMAP};

/// The grants that concern one CR, as read, in the order they are judged.
#[derive(Clone, Debug, Default)]
pub(crate) struct Grants {
    /// Each Secret the spec signs with (its field) and the CRs it grants its use to;
    /// `None` in the operator's namespace, where no grant is needed.
    pub secrets: Vec<(&'static str, SecretRef, Option<Vec<String>>)>,
    /// Each role the spec assumes (its field), and whether it is granted to the CR.
    pub roles: Vec<(&'static str, String, bool)>,
}

/// Whether CR `cr` may use its identity, judged in order: the first refusal is the
/// answer. A Secret's refusal reads the same whether it is missing, unreadable or
/// simply not granting, so a CR learns nothing about Secrets it may not use.
pub(crate) fn permission(
    cr: &str,
    grants: &Grants,
    operator_namespace: Option<&str>,
) -> Result<(), (Reason, String)> {
    for (field, secret, grantees) in &grants.secrets {
        let Some(grantees) = grantees else {
            continue;
        };
        if !grantees.iter().any(|g| g == cr || g == "*") {
            return Err((
                Reason::CredentialsNotPermitted,
                format!(
                    "spec.aws.{field} {}/{} is not permitted: a Secret outside the \
                     operator's namespace must list this ECRPullSecret in its annotation {GRANT_ANNOTATION}",
                    secret.namespace, secret.name
                ),
            ));
        }
    }
    if let Some((field, _, _)) = grants.roles.iter().find(|(_, _, granted)| !granted) {
        let namespace = operator_namespace.unwrap_or("the operator's namespace");
        return Err((
            Reason::RoleNotPermitted,
            format!(
                "spec.aws.{field} is not granted to this ECRPullSecret: a cluster admin \
                 lists the role under the key {cr} of ConfigMap {namespace}/{ROLE_GRANTS_CONFIGMAP}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(ns: &str) -> SecretRef {
        SecretRef {
            name: "creds".into(),
            namespace: ns.into(),
        }
    }

    #[test]
    fn the_first_refusal_in_order_is_the_answer() {
        let grants = Grants {
            secrets: vec![
                ("credentialsSecretRef", secret("ops"), None),
                (
                    "rolesAnywhere.certificateSecretRef",
                    secret("team"),
                    Some(vec!["other".into()]),
                ),
            ],
            roles: vec![("roleArn", "arn:aws:iam::1:role/r".into(), false)],
        };
        let (reason, message) = permission("mine", &grants, Some("ops")).unwrap_err();
        assert_eq!(reason, Reason::CredentialsNotPermitted);
        assert!(
            message.contains("rolesAnywhere.certificateSecretRef team/creds"),
            "{message}"
        );

        let granted = Grants {
            secrets: vec![(
                "credentialsSecretRef",
                secret("team"),
                Some(vec!["*".into()]),
            )],
            ..grants.clone()
        };
        let (reason, message) = permission("mine", &granted, Some("ops")).unwrap_err();
        assert_eq!(reason, Reason::RoleNotPermitted);
        assert!(message.contains("key mine of ConfigMap ops/"), "{message}");
    }

    #[test]
    fn nothing_to_grant_or_all_granted_is_permitted() {
        assert_eq!(permission("mine", &Grants::default(), None), Ok(()));
        let grants = Grants {
            secrets: vec![(
                "credentialsSecretRef",
                secret("team"),
                Some(vec!["mine".into()]),
            )],
            roles: vec![("roleArn", "arn:aws:iam::1:role/r".into(), true)],
        };
        assert_eq!(permission("mine", &grants, None), Ok(()));
    }
}
