//! Why a spec the CRD schema admitted cannot be served: one variant per rule of
//! `validate` and `rolesanywhere`, each naming the field and never a secret-looking value.

use std::fmt;

use super::patterns::PatternError;
use crate::reconcile::vocab::shown;

/// A spec the CRD schema let through but that cannot be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SpecError {
    SecretName(String),
    NoTargets,
    Registry {
        host: String,
    },
    Duration {
        field: &'static str,
        value: String,
    },
    Selector(crate::reconcile::decide::patterns::SelectorError),
    Glob(PatternError),
    TooMany {
        field: &'static str,
        max: usize,
    },
    OutOfRange {
        field: &'static str,
        value: String,
        allowed: String,
    },
    NoRefreshWindow {
        min_interval: String,
        before_expiry: String,
    },
    RoleArn(String),
    RoleNotAllowed(String),
    SessionName(String),
    SecretRef(String),
    /// `spec.aws.rolesAnywhere.<field>`: what is wrong with it.
    RolesAnywhere(String),
    /// `credentialsSecretRef` and `rolesAnywhere` both name the base identity.
    TwoBaseIdentities,
    /// `secretPolicy: Merge` must know its hosts before it holds a token: they are the
    /// entries it may touch in someone else's Secret.
    MergeWithoutRegistries,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::SecretName(n) => write!(
                f,
                "spec.secretName {} is not a valid Secret name (lowercase DNS-1123 subdomain, at most 253 characters)",
                shown(n)
            ),
            SpecError::NoTargets => write!(
                f,
                "no target namespaces: set spec.namespaces and/or spec.namespaceSelector"
            ),
            SpecError::Registry { host } => write!(
                f,
                "spec.registries: {} is not an ECR registry host \
                 (<account>.dkr.ecr.<region>.amazonaws.com[.cn] or public.ecr.aws)",
                shown(host)
            ),
            SpecError::Duration { field, value } => write!(
                f,
                "{field}: {} is not a duration like 6h, 30m or 1h30m",
                shown(value)
            ),
            SpecError::Selector(m) => write!(f, "spec.namespaceSelector: {m}"),
            SpecError::Glob(PatternError::Invalid(g)) => {
                write!(f, "namespace pattern {} is not a name or a glob", shown(g))
            }
            SpecError::Glob(PatternError::TooManyWildcards(g)) => write!(
                f,
                "namespace pattern {} has more than {} wildcards",
                shown(g),
                crate::reconcile::decide::patterns::MAX_WILDCARDS
            ),
            SpecError::Glob(PatternError::TooManyGlobs(n)) => write!(
                f,
                "namespace patterns: {n} globs in one list, at most {} allowed",
                crate::reconcile::decide::patterns::MAX_GLOBS
            ),
            SpecError::TooMany { field, max } => {
                write!(f, "{field}: more than {max} entries")
            }
            SpecError::OutOfRange {
                field,
                value,
                allowed,
            } => write!(f, "{field}: {} is out of range ({allowed})", shown(value)),
            SpecError::NoRefreshWindow {
                min_interval,
                before_expiry,
            } => write!(
                f,
                "spec.refresh: minInterval {min_interval} plus beforeExpiry {before_expiry} \
                 leaves no time to refresh within the 12h token lifetime"
            ),
            SpecError::RoleNotAllowed(a) => write!(
                f,
                "spec.aws.roleArn {} is not permitted by the operator's allowed role ARNs",
                shown(a)
            ),
            SpecError::SecretRef(m) => write!(f, "spec.aws.credentialsSecretRef: {m}"),
            SpecError::RolesAnywhere(m) => write!(f, "spec.aws.rolesAnywhere.{m}"),
            SpecError::TwoBaseIdentities => f.write_str(
                "spec.aws: credentialsSecretRef and rolesAnywhere both name the credentials; set one",
            ),
            SpecError::MergeWithoutRegistries => f.write_str(
                "spec.secretPolicy Merge needs spec.registries (or the operator's REGISTRY): \
                 the registry entries it maintains in a shared Secret must be known",
            ),
            SpecError::RoleArn(a) => {
                write!(f, "spec.aws.roleArn {} is not an IAM role ARN", shown(a))
            }
            SpecError::SessionName(s) => write!(
                f,
                "spec.aws.roleSessionName {} must be 2 to 64 of letters, digits and +=,.@-_",
                shown(s)
            ),
        }
    }
}

impl std::error::Error for SpecError {}
