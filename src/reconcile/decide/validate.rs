//! What a spec may hold beyond the CRD schema: names Kubernetes accepts, patterns that
//! compile, durations and lists within bounds, roles the operator allows. A spec that
//! passes is served without an overflow, a storm or a quadratic blow-up; one that fails
//! becomes `InvalidSpec` with a message naming the field, never its secret-looking value.

use std::time::Duration;

use super::fields::{format_duration, is_dns_label, is_dns_subdomain, parse_duration};
use super::patterns::NamePatterns;
use super::spec::{
    AwsAuth, DeletionPolicy, LabelSelector, SecretPolicy, Spec, DEFAULT_MIN_INTERVAL,
    DEFAULT_TOKEN_LIFETIME,
};
use super::spec_error::SpecError;
use crate::reconcile::vocab::shown;

/// The lowest `minInterval` a CR may ask for unless the operator lowers it
/// (`--min-refresh-interval`): ECR's quota is per account and region, so one CR refreshing
/// every second would throttle every other CR on that principal.
pub(crate) const DEFAULT_MIN_INTERVAL_FLOOR: Duration = Duration::from_secs(30);
/// The highest `minInterval`: a floor longer than a token's life could never refresh in time.
pub(crate) const MAX_MIN_INTERVAL: Duration = DEFAULT_TOKEN_LIFETIME;
/// The highest `beforeExpiry`: at least an hour of a fresh token is used before refreshing.
pub(crate) const MAX_BEFORE_EXPIRY: Duration = Duration::from_secs(11 * 3600);
/// Most entries in `namespaces` and `excludeNamespaces` (as the CRD's `maxItems`).
pub(crate) const MAX_NAMESPACE_PATTERNS: usize = 512;
/// Most entries in `serviceAccounts` (as the CRD's `maxItems`).
pub(crate) const MAX_SERVICE_ACCOUNTS: usize = 64;
/// Most entries in `registries` (as the CRD's `maxItems`).
pub(crate) const MAX_REGISTRIES: usize = 32;

/// A validated spec, with defaults applied: what the planner works from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ValidSpec {
    pub secret_name: String,
    pub namespaces: NamePatterns,
    pub namespace_selector: Option<LabelSelector>,
    pub exclude_namespaces: NamePatterns,
    /// `None` means every ServiceAccount (`"*"`).
    pub service_accounts: Option<Vec<String>>,
    pub registries: Vec<crate::reconcile::decide::registry::RegistryHost>,
    pub region: Option<String>,
    pub aws: AwsAuth,
    pub before_expiry: Option<Duration>,
    pub min_interval: Duration,
    pub deletion_policy: DeletionPolicy,
    pub adopt_existing: bool,
    pub secret_policy: SecretPolicy,
    /// Check each token at its registry's `/v2/` (default on).
    pub verify: bool,
}

/// What the operator allows beyond the CRD schema: its own settings that bound specs.
#[derive(Clone, Debug)]
pub(crate) struct SpecPolicy {
    /// `REGISTRY`: registry hosts when a CR names none.
    pub default_registries: Vec<String>,
    /// The lowest `minInterval` accepted (`--min-refresh-interval`).
    pub min_interval_floor: Duration,
    /// `--allowed-role-arns`: globs a `roleArn` must match; empty allows none, `*` any.
    pub allowed_role_arns: Vec<String>,
}

impl Default for SpecPolicy {
    fn default() -> Self {
        SpecPolicy {
            default_registries: Vec::new(),
            min_interval_floor: DEFAULT_MIN_INTERVAL_FLOOR,
            allowed_role_arns: vec!["*".to_string()],
        }
    }
}

// === impl Spec ===

impl Spec {
    /// Checks what the schema could not, bounds what the schema admits, and applies
    /// defaults: a spec that passes can be served without an overflow, a storm or a
    /// quadratic blow-up.
    pub(crate) fn validate(&self, policy: &SpecPolicy) -> Result<ValidSpec, SpecError> {
        use crate::reconcile::decide::registry::RegistryHost;
        if !is_dns_subdomain(&self.secret_name) {
            return Err(SpecError::SecretName(self.secret_name.clone()));
        }
        if self.namespaces.is_empty() && self.namespace_selector.is_none() {
            return Err(SpecError::NoTargets);
        }
        bounded("spec.namespaces", &self.namespaces, MAX_NAMESPACE_PATTERNS)?;
        bounded(
            "spec.excludeNamespaces",
            &self.exclude_namespaces,
            MAX_NAMESPACE_PATTERNS,
        )?;
        let namespaces = NamePatterns::compile(&self.namespaces).map_err(SpecError::Glob)?;
        let exclude_namespaces =
            NamePatterns::compile(&self.exclude_namespaces).map_err(SpecError::Glob)?;
        if let Some(sel) = &self.namespace_selector {
            crate::reconcile::decide::patterns::check_selector(sel).map_err(SpecError::Selector)?;
        }
        let hosts: &[String] = if self.registries.is_empty() {
            &policy.default_registries
        } else {
            &self.registries
        };
        bounded("spec.registries", hosts, MAX_REGISTRIES)?;
        let mut registries = Vec::new();
        for host in hosts {
            let parsed = RegistryHost::parse(host)
                .ok_or_else(|| SpecError::Registry { host: host.clone() })?;
            if !registries.contains(&parsed) {
                registries.push(parsed);
            }
        }
        let secret_policy = self.secret_policy.unwrap_or_default();
        if secret_policy == SecretPolicy::Merge && registries.is_empty() {
            return Err(SpecError::MergeWithoutRegistries);
        }
        let aws = self.aws.clone().unwrap_or_default();
        validate_aws(&aws, policy)?;
        let (before_expiry, min_interval) = self.refresh_window(policy)?;
        let service_accounts = match &self.service_accounts {
            None => Some(vec!["default".to_string()]),
            Some(list) => {
                bounded("spec.serviceAccounts", list, MAX_SERVICE_ACCOUNTS)?;
                if list.iter().any(|s| s == "*") {
                    None
                } else {
                    let mut names = list.clone();
                    names.sort();
                    names.dedup();
                    Some(names)
                }
            }
        };
        Ok(ValidSpec {
            secret_name: self.secret_name.clone(),
            namespaces,
            namespace_selector: self.namespace_selector.clone(),
            exclude_namespaces,
            service_accounts,
            registries,
            region: self.region.clone().filter(|r| !r.is_empty()),
            aws,
            before_expiry,
            min_interval,
            deletion_policy: self.deletion_policy.unwrap_or_default(),
            adopt_existing: self.adopt_existing,
            secret_policy,
            verify: self.verify.unwrap_or(true),
        })
    }
}

impl Spec {
    /// `beforeExpiry` and `minInterval`, each within its bounds, together fitting in one
    /// token's life: the floor after a fetch plus the margin before expiry must leave
    /// time to refresh, or the refresh would come after the token expired.
    fn refresh_window(
        &self,
        policy: &SpecPolicy,
    ) -> Result<(Option<Duration>, Duration), SpecError> {
        let refresh = self.refresh.clone().unwrap_or_default();
        let before_expiry = match &refresh.before_expiry {
            Some(v) => Some(duration_in(
                "spec.refresh.beforeExpiry",
                v,
                Duration::from_secs(1),
                MAX_BEFORE_EXPIRY,
            )?),
            None => None,
        };
        let min_interval = match &refresh.min_interval {
            Some(v) => duration_in(
                "spec.refresh.minInterval",
                v,
                policy.min_interval_floor,
                MAX_MIN_INTERVAL,
            )?,
            None => DEFAULT_MIN_INTERVAL.max(policy.min_interval_floor),
        };
        let margin = before_expiry.unwrap_or(DEFAULT_TOKEN_LIFETIME / 2);
        if min_interval.saturating_add(margin) >= DEFAULT_TOKEN_LIFETIME {
            return Err(SpecError::NoRefreshWindow {
                min_interval: format_duration(min_interval),
                before_expiry: match before_expiry {
                    Some(d) => format_duration(d),
                    None => "(default 6h)".to_string(),
                },
            });
        }
        Ok((before_expiry, min_interval))
    }
}

fn bounded(field: &'static str, list: &[String], max: usize) -> Result<(), SpecError> {
    if list.len() > max {
        return Err(SpecError::TooMany { field, max });
    }
    Ok(())
}

/// A duration field within `[min, max]`.
fn duration_in(
    field: &'static str,
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, SpecError> {
    let d = parse_duration(value).ok_or_else(|| SpecError::Duration {
        field,
        value: value.to_string(),
    })?;
    if d < min || d > max {
        return Err(SpecError::OutOfRange {
            field,
            value: value.to_string(),
            allowed: format!("{} to {}", format_duration(min), format_duration(max)),
        });
    }
    Ok(d)
}

/// The per-CR identity: well-formed names, and a role the operator allows.
fn validate_aws(aws: &AwsAuth, policy: &SpecPolicy) -> Result<(), SpecError> {
    if let Some(r) = &aws.credentials_secret_ref {
        if !is_dns_subdomain(&r.name) {
            return Err(SpecError::SecretRef(format!(
                "name {} is not a valid Secret name",
                shown(&r.name)
            )));
        }
        if !is_dns_label(&r.namespace) {
            return Err(SpecError::SecretRef(format!(
                "namespace {} is not a valid namespace name",
                shown(&r.namespace)
            )));
        }
    }
    let role_ok = |arn: &str| {
        if !is_role_arn(arn) {
            return Err(SpecError::RoleArn(arn.to_string()));
        }
        if !policy
            .allowed_role_arns
            .iter()
            .any(|p| wildcard_match(p, arn))
        {
            return Err(SpecError::RoleNotAllowed(arn.to_string()));
        }
        Ok(())
    };
    if let Some(ra) = &aws.roles_anywhere {
        if aws.credentials_secret_ref.is_some() {
            return Err(SpecError::TwoBaseIdentities);
        }
        super::rolesanywhere::validate(ra, role_ok)?;
    }
    if let Some(arn) = &aws.role_arn {
        role_ok(arn)?;
    }
    if let Some(name) = &aws.role_session_name {
        if !is_session_name(name) {
            return Err(SpecError::SessionName(name.clone()));
        }
    }
    Ok(())
}

/// `*` matches any run, every other character itself. For the operator's own allowlists
/// (trusted patterns, bounded input): the two-pointer scan is O(pattern x text) at worst.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
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
        let v = s.validate(&SpecPolicy::default()).unwrap();
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
        assert_eq!(
            s.validate(&SpecPolicy::default()).unwrap().service_accounts,
            None
        );
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
            let err = spec(json.clone())
                .validate(&SpecPolicy::default())
                .unwrap_err()
                .to_string();
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
            .validate(&SpecPolicy {
                default_registries: vec!["123456789012.dkr.ecr.eu-west-1.amazonaws.com".into()],
                ..SpecPolicy::default()
            })
            .unwrap();
        assert_eq!(v.registries.len(), 1);
        assert_eq!(v.registries[0].region, "eu-west-1");
    }

    fn refresh(before: Option<&str>, min: Option<&str>) -> Result<ValidSpec, SpecError> {
        spec(serde_json::json!({"secretName": "x", "namespaces": ["a"],
            "refresh": {"beforeExpiry": before, "minInterval": min}}))
        .validate(&SpecPolicy::default())
    }

    #[test]
    fn durations_out_of_range_are_invalid_not_overflows() {
        for (before, min, needle) in [
            (None, Some("100000000h"), "minInterval"),
            (None, Some("0s"), "minInterval"),
            (None, Some("29s"), "minInterval"),
            (Some("0s"), None, "beforeExpiry"),
            (Some("12h"), None, "beforeExpiry"),
            (Some("99999999999h"), None, "beforeExpiry"),
            (None, Some("6h"), "no time to refresh"),
            (Some("11h"), Some("1h"), "no time to refresh"),
        ] {
            let err = refresh(before, min).unwrap_err().to_string();
            assert!(err.contains(needle), "{before:?}/{min:?}: {err}");
        }
        let ok = refresh(Some("6h"), Some("30s")).unwrap();
        assert_eq!(ok.min_interval, Duration::from_secs(30));
        assert_eq!(ok.before_expiry, Some(Duration::from_secs(6 * 3600)));
        let floor = SpecPolicy {
            min_interval_floor: Duration::from_secs(1),
            ..SpecPolicy::default()
        };
        let fast = spec(serde_json::json!({"secretName": "x", "namespaces": ["a"],
            "refresh": {"minInterval": "1s"}}));
        assert_eq!(
            fast.validate(&floor).unwrap().min_interval,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn lists_are_bounded() {
        let many: Vec<String> = (0..=MAX_NAMESPACE_PATTERNS)
            .map(|i| format!("ns{i}"))
            .collect();
        let err = spec(serde_json::json!({"secretName": "x", "namespaces": many}))
            .validate(&SpecPolicy::default())
            .unwrap_err();
        assert!(err.to_string().contains("spec.namespaces"), "{err}");
        let globs: Vec<String> = (0..40).map(|i| format!("team{i}-*")).collect();
        let err = spec(serde_json::json!({"secretName": "x", "namespaces": globs}))
            .validate(&SpecPolicy::default())
            .unwrap_err();
        assert!(err.to_string().contains("globs"), "{err}");
        let sas: Vec<String> = (0..=MAX_SERVICE_ACCOUNTS)
            .map(|i| format!("sa{i}"))
            .collect();
        let err = spec(
            serde_json::json!({"secretName": "x", "namespaces": ["a"], "serviceAccounts": sas}),
        )
        .validate(&SpecPolicy::default())
        .unwrap_err();
        assert!(err.to_string().contains("spec.serviceAccounts"), "{err}");
    }

    #[test]
    fn role_arns_outside_the_operators_allowlist_are_refused() {
        let policy = SpecPolicy {
            allowed_role_arns: vec!["arn:aws:iam::123456789012:role/ecr-*".into()],
            ..SpecPolicy::default()
        };
        let with_role = |arn: &str| {
            spec(serde_json::json!({"secretName": "x", "namespaces": ["a"], "aws": {"roleArn": arn}}))
                .validate(&policy)
        };
        assert!(with_role("arn:aws:iam::123456789012:role/ecr-pull").is_ok());
        let err = with_role("arn:aws:iam::210987654321:role/ecr-pull").unwrap_err();
        assert!(err.to_string().contains("not permitted"), "{err}");
        let none = SpecPolicy {
            allowed_role_arns: Vec::new(),
            ..SpecPolicy::default()
        };
        assert!(
            spec(serde_json::json!({"secretName": "x", "namespaces": ["a"],
            "aws": {"roleArn": "arn:aws:iam::123456789012:role/ecr-pull"}}))
            .validate(&none)
            .is_err()
        );
    }

    #[test]
    fn credentials_secret_refs_must_be_kubernetes_names() {
        for (name, namespace) in [
            ("a/b", "ops"),
            ("ok", "../kube-system"),
            ("ok", "a.b"),
            ("", "ops"),
        ] {
            let err = spec(serde_json::json!({"secretName": "x", "namespaces": ["a"],
                "aws": {"credentialsSecretRef": {"name": name, "namespace": namespace}}}))
            .validate(&SpecPolicy::default())
            .unwrap_err();
            assert!(err.to_string().contains("credentialsSecretRef"), "{err}");
        }
    }

    #[test]
    fn wildcards_match_whole_strings() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match(
            "arn:*:role/ecr-*",
            "arn:aws:iam::1:role/ecr-x"
        ));
        assert!(!wildcard_match(
            "arn:*:role/ecr-*",
            "arn:aws:iam::1:role/admin"
        ));
        assert!(!wildcard_match("", "x"));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
