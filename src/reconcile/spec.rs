//! The `ECRPullSecret` custom resource: its spec as users write it, its status as we
//! report it, and the validation the CRD schema cannot express.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::k8s::types::{ObjectMeta, Resource};

/// The finalizer that holds a CR with `deletionPolicy: Delete` until cleanup is done.
pub const FINALIZER: &str = "ecr.creds.dev/cleanup";

/// ECR tokens live 12 hours; by default we refresh when half remains.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Never refresh one group more often than this, whatever the expiry says (a token
/// already expired by its own `expiresAt`, clock skew, or a failing AWS).
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// An `ECRPullSecret` as read from the API server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EcrPullSecret {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default)]
    pub status: Option<Status>,
}

impl Resource for EcrPullSecret {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

/// What the user asks for. The reference operator's fields (`secretName`, `namespaces`)
/// are accepted unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub secret_name: String,
    /// Namespace names; `*` and `?` globs allowed.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A standard LabelSelector; `{}` selects every namespace, including later ones.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Names or globs never targeted.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// ServiceAccounts to patch; `["*"]` means all. Default `["default"]`.
    #[serde(default)]
    pub service_accounts: Option<Vec<String>>,
    /// Registry hosts (`<account>.dkr.ecr.<region>.amazonaws.com`, `public.ecr.aws`).
    /// Empty: the operator's `REGISTRY`, else the token's own registry in the region.
    #[serde(default)]
    pub registries: Vec<String>,
    /// The region used when no registry names one; default the operator's `AWS_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub aws: Option<AwsAuth>,
    #[serde(default)]
    pub refresh: Option<RefreshSpec>,
    #[serde(default)]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Take over Secrets of `secretName` that we did not create but that hold only ECR
    /// registries (the reference operator's). Off by default.
    #[serde(default)]
    pub adopt_existing: bool,
}

/// Per-CR AWS identity, on top of the operator's default credential chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuth {
    #[serde(default)]
    pub credentials_secret_ref: Option<SecretRef>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub role_session_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
    pub namespace: String,
}

/// Refresh timing. Durations are Go-style strings (`6h`, `30m`, `1h30m`, `90s`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshSpec {
    /// Refresh when this much lifetime remains. Default: half the token's lifetime.
    #[serde(default)]
    pub before_expiry: Option<String>,
    /// The floor between two refreshes of one CR. Default 1m.
    #[serde(default)]
    pub min_interval: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletionPolicy {
    /// Managed Secrets and ServiceAccount entries stay when the CR goes (the reference's
    /// behaviour).
    #[default]
    Retain,
    /// A finalizer removes them first.
    Delete,
}

/// A standard `metav1.LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// What we report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<String>,
    #[serde(default)]
    pub target_namespaces: u32,
    #[serde(default)]
    pub synced_namespaces: u32,
    #[serde(default)]
    pub failed_namespaces: u32,
    /// At most [`MAX_REPORTED_FAILURES`], sorted by namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<NamespaceFailure>,
}

/// How many failures the status lists; the count is always complete.
pub const MAX_REPORTED_FAILURES: usize = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceFailure {
    pub namespace: String,
    pub reason: String,
    pub message: String,
}

/// A `metav1.Condition`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A spec the CRD schema let through but that cannot be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    SecretName(String),
    NoTargets,
    Registry { host: String },
    Duration { field: &'static str, value: String },
    Selector(String),
    Glob(String),
    RoleArn(String),
    SessionName(String),
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
            SpecError::Glob(g) => {
                write!(f, "namespace pattern {} is not a name or a glob", shown(g))
            }
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

/// An invalid value as an error shows it: quoted when it looks like the name, host or
/// duration it should be; only its length when it looks like a credential pasted into the
/// wrong field, since errors reach the CR's status and Events, which many can read.
pub fn shown(value: &str) -> String {
    let n = value.chars().count();
    let upper = value.chars().any(|c| c.is_ascii_uppercase());
    let digit = value.chars().any(|c| c.is_ascii_digit());
    let credential_like = n >= 16
        && !value.starts_with("arn:")
        && !value.contains(char::is_whitespace)
        && ((upper && digit) || value.contains('+') || (upper && value.contains('/')));
    if credential_like {
        format!("<{n} characters, withheld: it looks like a credential>")
    } else {
        format!("{value:?}")
    }
}

/// A validated spec, with defaults applied: what the planner works from.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    pub secret_name: String,
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    pub exclude_namespaces: Vec<String>,
    /// `None` means every ServiceAccount (`"*"`).
    pub service_accounts: Option<Vec<String>>,
    pub registries: Vec<crate::reconcile::registry::RegistryHost>,
    pub region: Option<String>,
    pub aws: AwsAuth,
    pub before_expiry: Option<Duration>,
    pub min_interval: Duration,
    pub deletion_policy: DeletionPolicy,
    pub adopt_existing: bool,
}

// === impl Spec ===

impl Spec {
    /// Checks what the schema could not and applies defaults. `default_registries` is the
    /// operator's `REGISTRY` setting.
    pub fn validate(&self, default_registries: &[String]) -> Result<ValidSpec, SpecError> {
        use crate::reconcile::registry::RegistryHost;
        if !is_dns_subdomain(&self.secret_name) {
            return Err(SpecError::SecretName(self.secret_name.clone()));
        }
        if self.namespaces.is_empty() && self.namespace_selector.is_none() {
            return Err(SpecError::NoTargets);
        }
        for pattern in self.namespaces.iter().chain(&self.exclude_namespaces) {
            if !is_namespace_pattern(pattern) {
                return Err(SpecError::Glob(pattern.clone()));
            }
        }
        if let Some(sel) = &self.namespace_selector {
            crate::reconcile::select::check_selector(sel).map_err(SpecError::Selector)?;
        }
        let hosts: &[String] = if self.registries.is_empty() {
            default_registries
        } else {
            &self.registries
        };
        let mut registries = Vec::new();
        for host in hosts {
            let parsed = RegistryHost::parse(host)
                .ok_or_else(|| SpecError::Registry { host: host.clone() })?;
            if !registries.contains(&parsed) {
                registries.push(parsed);
            }
        }
        let aws = self.aws.clone().unwrap_or_default();
        if let Some(arn) = &aws.role_arn {
            if !is_role_arn(arn) {
                return Err(SpecError::RoleArn(arn.clone()));
            }
        }
        if let Some(name) = &aws.role_session_name {
            if !is_session_name(name) {
                return Err(SpecError::SessionName(name.clone()));
            }
        }
        let refresh = self.refresh.clone().unwrap_or_default();
        let before_expiry = match &refresh.before_expiry {
            Some(v) => Some(parse_duration(v).ok_or_else(|| SpecError::Duration {
                field: "spec.refresh.beforeExpiry",
                value: v.clone(),
            })?),
            None => None,
        };
        let min_interval = match &refresh.min_interval {
            Some(v) => parse_duration(v).ok_or_else(|| SpecError::Duration {
                field: "spec.refresh.minInterval",
                value: v.clone(),
            })?,
            None => DEFAULT_MIN_INTERVAL,
        };
        let service_accounts = match &self.service_accounts {
            None => Some(vec!["default".to_string()]),
            Some(list) if list.iter().any(|s| s == "*") => None,
            Some(list) => Some(list.clone()),
        };
        Ok(ValidSpec {
            secret_name: self.secret_name.clone(),
            namespaces: self.namespaces.clone(),
            namespace_selector: self.namespace_selector.clone(),
            exclude_namespaces: self.exclude_namespaces.clone(),
            service_accounts,
            registries,
            region: self.region.clone().filter(|r| !r.is_empty()),
            aws,
            before_expiry,
            min_interval,
            deletion_policy: self.deletion_policy.unwrap_or_default(),
            adopt_existing: self.adopt_existing,
        })
    }
}

impl ValidSpec {
    /// A spec that targets nothing, for cleaning up after a CR whose spec no longer
    /// validates.
    pub fn placeholder() -> ValidSpec {
        ValidSpec {
            secret_name: String::new(),
            namespaces: Vec::new(),
            namespace_selector: None,
            exclude_namespaces: Vec::new(),
            service_accounts: Some(Vec::new()),
            registries: Vec::new(),
            region: None,
            aws: AwsAuth::default(),
            before_expiry: None,
            min_interval: DEFAULT_MIN_INTERVAL,
            deletion_policy: DeletionPolicy::Delete,
            adopt_existing: false,
        }
    }
}

/// Go-style durations made of `h`, `m` and `s` parts: `6h`, `1h30m`, `90s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !digits.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// A lowercase RFC 1123 subdomain, as Kubernetes requires for object names.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A namespace name, optionally with `*`/`?` globs.
fn is_namespace_pattern(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'*' | b'?')
        })
}

fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > 5
}

fn is_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'-' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reference_operator_spec_is_accepted_unchanged() {
        let s = spec(serde_json::json!({"secretName": "ecr-secret", "namespaces": ["a", "b"]}));
        let v = s.validate(&[]).unwrap();
        assert_eq!(v.secret_name, "ecr-secret");
        assert_eq!(v.service_accounts, Some(vec!["default".to_string()]));
        assert_eq!(v.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(v.min_interval, DEFAULT_MIN_INTERVAL);
    }

    #[test]
    fn star_means_every_service_account() {
        let s = spec(
            serde_json::json!({"secretName": "x", "namespaces": ["a"], "serviceAccounts": ["*"]}),
        );
        assert_eq!(s.validate(&[]).unwrap().service_accounts, None);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let cases = [
            (
                serde_json::json!({"secretName": "Bad_Name", "namespaces": ["a"]}),
                "secretName",
            ),
            (
                serde_json::json!({"secretName": "x"}),
                "no target namespaces",
            ),
            (
                serde_json::json!({"secretName": "x", "namespaces": ["a"], "registries": ["docker.io"]}),
                "docker.io",
            ),
            (
                serde_json::json!({"secretName": "x", "namespaces": ["a"], "refresh": {"beforeExpiry": "6 hours"}}),
                "beforeExpiry",
            ),
            (
                serde_json::json!({"secretName": "x", "namespaces": ["a"], "aws": {"roleArn": "role"}}),
                "roleArn",
            ),
            (
                serde_json::json!({"secretName": "x", "namespaces": ["A_B"]}),
                "A_B",
            ),
        ];
        for (json, needle) in cases {
            let err = spec(json.clone()).validate(&[]).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn durations_parse_go_style() {
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("6"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    #[test]
    fn default_registry_comes_from_operator_setting() {
        let s = spec(serde_json::json!({"secretName": "x", "namespaces": ["a"]}));
        let v = s
            .validate(&["123456789012.dkr.ecr.eu-west-1.amazonaws.com".to_string()])
            .unwrap();
        assert_eq!(v.registries.len(), 1);
        assert_eq!(v.registries[0].region, "eu-west-1");
    }
}
