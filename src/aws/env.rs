//! A snapshot of the AWS-related environment, read through an injected lookup so tests can
//! describe an environment without mutating the process's own (which is racy across tests).

use std::collections::BTreeMap;
use std::fmt;

/// Every variable the `aws` module reads. Listing them keeps the snapshot small and makes
/// the module's configuration surface greppable.
pub(crate) const VARIABLES: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ENDPOINT_URL_ECR_PUBLIC",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_ROLESANYWHERE",
    "AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN",
    "AWS_ROLESANYWHERE_PROFILE_ARN",
    "AWS_ROLESANYWHERE_ROLE_ARN",
    "AWS_ROLESANYWHERE_CERTIFICATE",
    "AWS_ROLESANYWHERE_PRIVATE_KEY",
    "AWS_ROLESANYWHERE_SESSION_DURATION",
    "AWS_CA_BUNDLE",
    "ECR_REGISTRY_ENDPOINT_URL",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Values are secrets too (AWS_SECRET_ACCESS_KEY), so Debug lists only the names.
#[derive(Clone, Default)]
pub struct AwsEnv {
    vars: BTreeMap<&'static str, String>,
}

// === impl AwsEnv ===

impl AwsEnv {
    /// Reads [`VARIABLES`] through `lookup`; empty and blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let vars = VARIABLES
            .iter()
            .filter_map(|name| {
                let value = lookup(name)?;
                let value = value.trim();
                (!value.is_empty()).then(|| (*name, value.to_string()))
            })
            .collect();
        Self { vars }
    }

    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a snapshot from literal pairs (tests, examples).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// The value of `name`, if set and non-blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The first of `names` that is set.
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// A boolean variable: `true` (any case) is true, everything else false.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// AWS_REGION, else AWS_DEFAULT_REGION.
    pub fn region(&self) -> Option<&str> {
        self.first(&["AWS_REGION", "AWS_DEFAULT_REGION"])
    }
}

impl fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_values_count_as_unset() {
        let env = AwsEnv::from_pairs(&[("AWS_REGION", "  "), ("AWS_DEFAULT_REGION", "eu-west-1")]);
        assert_eq!(env.region(), Some("eu-west-1"));
    }

    #[test]
    fn debug_shows_names_never_values() {
        let env = AwsEnv::from_pairs(&[("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY"));
        assert!(!shown.contains("s3cr3t-value"));
    }

    #[test]
    fn flag_is_true_only_for_true() {
        let env = AwsEnv::from_pairs(&[
            ("AWS_USE_FIPS_ENDPOINT", "TRUE"),
            ("AWS_EC2_METADATA_DISABLED", "1"),
        ]);
        assert!(env.flag("AWS_USE_FIPS_ENDPOINT"));
        assert!(!env.flag("AWS_EC2_METADATA_DISABLED"));
    }
}
