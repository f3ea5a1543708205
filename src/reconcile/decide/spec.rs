//! The `ECRPullSecret` custom resource: its spec as users write it and its status as we
//! report it. What a spec may hold beyond the CRD schema is checked in `validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::k8s::types::{ObjectMeta, Resource};

/// ECR tokens live 12 hours; by default we refresh when half remains.
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Never refresh one group more often than this, whatever the expiry says (a token
/// already expired by its own `expiresAt`, clock skew, or a failing AWS).
pub(crate) const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// An `ECRPullSecret` as read from the API server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EcrPullSecret {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default)]
    pub status: Option<EcrPullSecretStatus>,
}

impl Resource for EcrPullSecret {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl crate::runtime::store::Versioned for EcrPullSecret {
    fn resource_version(&self) -> &str {
        self.metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    }
}

/// What the user asks for. The reference operator's fields (`secretName`, `namespaces`)
/// are accepted unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spec {
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
    /// Whether the Secret is the operator's alone (`Own`, the default) or a pull secret
    /// shared with other writers, where only this CR's registry entries are maintained
    /// (`Merge`).
    #[serde(default)]
    pub secret_policy: Option<SecretPolicy>,
    /// Check each new token at its registry (`GET /v2/`) and report `RegistryVerified`.
    /// Default true; the operator's `--verify-registries=false` turns it off for all.
    #[serde(default)]
    pub verify: Option<bool>,
}

/// Per-CR AWS identity, on top of the operator's default credential chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AwsAuth {
    #[serde(default)]
    pub credentials_secret_ref: Option<SecretRef>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub role_session_name: Option<String>,
    /// IAM Roles Anywhere: a device certificate Secret instead of an access key. The
    /// base identity, like `credentialsSecretRef` (never both); `roleArn` chains on top.
    #[serde(default)]
    pub roles_anywhere: Option<RolesAnywhereSpec>,
}

impl AwsAuth {
    /// The Secrets this identity signs with (credentials, then the Roles Anywhere
    /// certificate), each with its field: each must grant the CR its use.
    pub(crate) fn signs_with(&self) -> Vec<(&'static str, &SecretRef)> {
        let ra = self.roles_anywhere.as_ref();
        (self
            .credentials_secret_ref
            .iter()
            .map(|s| ("credentialsSecretRef", s)))
        .chain(ra.map(|ra| {
            (
                "rolesAnywhere.certificateSecretRef",
                &ra.certificate_secret_ref,
            )
        }))
        .collect()
    }

    /// The roles this identity assumes (the Roles Anywhere session's, then the chained
    /// one), each with its field: each must be granted to the CR.
    pub(crate) fn assumes(&self) -> Vec<(&'static str, &str)> {
        let ra = self.roles_anywhere.as_ref();
        (ra.map(|ra| ("rolesAnywhere.roleArn", ra.role_arn.as_str()))
            .into_iter())
        .chain(self.role_arn.iter().map(|r| ("roleArn", r.as_str())))
        .collect()
    }
}

/// A CreateSession signed with the key of a `kubernetes.io/tls` Secret (cert-manager's
/// shape: `tls.crt` leaf then intermediates, `tls.key`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RolesAnywhereSpec {
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    /// The role the session is for; granted like `roleArn` (the role grants ConfigMap).
    pub role_arn: String,
    /// Granted like `credentialsSecretRef` (the Secret's grant annotation).
    pub certificate_secret_ref: SecretRef,
    /// Go-style, 15m to 12h; default 1h.
    #[serde(default)]
    pub session_duration: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct SecretRef {
    pub name: String,
    pub namespace: String,
}

/// Refresh timing. Durations are Go-style strings (`6h`, `30m`, `1h30m`, `90s`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshSpec {
    /// Refresh when this much lifetime remains. Default: half the token's lifetime.
    #[serde(default)]
    pub before_expiry: Option<String>,
    /// The floor between two refreshes of one CR. Default 1m.
    #[serde(default)]
    pub min_interval: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum DeletionPolicy {
    /// Managed Secrets and ServiceAccount entries stay when the CR goes (the reference's
    /// behaviour).
    #[default]
    Retain,
    /// A finalizer removes them first.
    Delete,
}

/// Who owns the Secret named `secretName`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SecretPolicy {
    /// The operator writes the whole Secret and deletes it when no longer wanted.
    #[default]
    Own,
    /// The Secret may hold other registries' entries (a shared pull secret): only this
    /// CR's registry entries are written, refreshed and removed; the hosts it maintains
    /// are recorded in the `ecr.creds.dev/merged-hosts` annotation.
    Merge,
}

/// A standard `metav1.LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// What we report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EcrPullSecretStatus {
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
    /// The last registry check per host, sorted by host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<RegistryCheckStatus>,
    /// Which credentials served each registry's token at the last refresh, by host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_sources: Vec<CredentialSourceStatus>,
}

/// The credentials one registry's token was fetched with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CredentialSourceStatus {
    pub host: String,
    /// See `reconcile::tokens::describe_source`: names from the CR, never a secret.
    pub source: String,
}

/// One registry's answer to the last token checked there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegistryCheckStatus {
    pub host: String,
    /// `Verified`, or why not: `Unauthorized`, `Forbidden`, `Unreachable`, `TLSError`,
    /// `UnexpectedAnswer`.
    pub result: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the registry was asked.
    pub checked_at: String,
}

/// How many failures the status lists; the count is always complete.
pub(crate) const MAX_REPORTED_FAILURES: usize = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NamespaceFailure {
    pub namespace: String,
    pub reason: String,
    pub message: String,
}

/// A `metav1.Condition`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
