//! The words every part of reconcile/ shares: the labels, annotations and finalizer the
//! operator writes on objects, the grant names it reads, the CR a reconcile acts for, the
//! typed `Reason`, and the time arithmetic they are written with. It imports nothing of
//! reconcile/, so every other file may lean on it without a circle.

use std::fmt;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

// === labels and annotations ===

/// The label that marks Secrets we manage; the Secret watch selects on it.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY_VALUE: &str = "ecr-creds-refresher";
/// `MANAGED_BY_LABEL=MANAGED_BY_VALUE`, for watches.
pub(crate) const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=ecr-creds-refresher";
/// The owning CR's name (an annotation: CR names may exceed a label value's 63 chars).
pub(crate) const OWNER_ANNOTATION: &str = "ecr.creds.dev/owner";
/// The owning CR's uid: a later CR that reuses a deleted CR's name is another owner.
pub(crate) const OWNER_UID_ANNOTATION: &str = "ecr.creds.dev/owner-uid";
pub(crate) const EXPIRES_ANNOTATION: &str = "ecr.creds.dev/expires-at";
pub(crate) const REFRESH_ANNOTATION: &str = "ecr.creds.dev/refresh-at";
pub(crate) const REGISTRIES_ANNOTATION: &str = "ecr.creds.dev/registries";
pub(crate) const CHECKSUM_ANNOTATION: &str = "ecr.creds.dev/checksum";
/// On a ServiceAccount: the `imagePullSecrets` entries we added (comma-separated), so we
/// only ever remove our own.
pub(crate) const SA_OWNED_ANNOTATION: &str = "ecr.creds.dev/image-pull-secrets";

/// On a shared pull secret: the hosts the operator maintains there, as a JSON object
/// `{host: {owner, ownerUid, refreshAt, expiresAt, checksum}}`. The only annotation the
/// admission policy lets the operator change on a Secret it does not manage.
pub(crate) const MERGED_HOSTS_ANNOTATION: &str = "ecr.creds.dev/merged-hosts";

/// The label every namespace carries with its own name; selectors see it, the cache
/// does not store it (see `select::NamespaceView::label`).
pub(crate) const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The finalizer that holds a CR with `deletionPolicy: Delete` until cleanup is done.
pub(crate) const FINALIZER: &str = "ecr.creds.dev/cleanup";

/// On a credentials Secret outside the operator's namespace: the ECRPullSecrets that may
/// use it, comma-separated (`*`: any). Like Gateway API's ReferenceGrant, the Secret's
/// owner opts in; without it, a CR could sign with any team's keys.
pub(crate) const GRANT_ANNOTATION: &str = "ecr.creds.dev/allowed-ecrpullsecrets";

/// In the operator's namespace: the ConfigMap granting IAM roles to ECRPullSecrets
/// (each key a CR name, each value the role ARNs it may name). Only a cluster admin
/// writes it: a CR alone can never pick a role.
pub(crate) const ROLE_GRANTS_CONFIGMAP: &str = "ecr-creds-refresher-role-grants";

// === the owner ===

/// The CR a reconcile acts for: its name, and its uid, which tells it apart from an
/// earlier CR of the same name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub name: String,
    pub uid: String,
}

// === reasons ===

/// Condition and failure reasons, CamelCase as Kubernetes expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Reason {
    TokenFetched,
    AwsError,
    Throttled,
    CredentialsMissing,
    /// The CR named a credentials Secret it may not use.
    CredentialsNotPermitted,
    /// The CR named an IAM role no cluster admin granted it.
    RoleNotPermitted,
    /// The Roles Anywhere certificate's notAfter has passed (AWS is not asked).
    CertificateExpired,
    /// The Roles Anywhere certificate's notBefore is still ahead (AWS is not asked).
    CertificateNotYetValid,
    /// The Roles Anywhere certificate or key is unreadable, unsupported or mismatched.
    CertificateInvalid,
    NamespaceErrors,
    SecretConflict,
    NamespaceNotFound,
    InvalidSpec,
    WriteFailed,
    ServiceAccountFailed,
    /// A bug: the reconcile panicked; the operator went on with the other CRs.
    ReconcilePanicked,
}

impl Reason {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Reason::TokenFetched => "TokenFetched",
            Reason::AwsError => "AwsError",
            Reason::Throttled => "Throttled",
            Reason::CredentialsMissing => "CredentialsMissing",
            Reason::CredentialsNotPermitted => "CredentialsNotPermitted",
            Reason::RoleNotPermitted => "RoleNotPermitted",
            Reason::CertificateExpired => "CertificateExpired",
            Reason::CertificateNotYetValid => "CertificateNotYetValid",
            Reason::CertificateInvalid => "CertificateInvalid",
            Reason::NamespaceErrors => "NamespaceErrors",
            Reason::SecretConflict => "SecretConflict",
            Reason::NamespaceNotFound => "NamespaceNotFound",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::WriteFailed => "WriteFailed",
            Reason::ServiceAccountFailed => "ServiceAccountFailed",
            Reason::ReconcilePanicked => "ReconcilePanicked",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === times and lists ===

/// An RFC 3339 time as [`format_time`] writes it; `None` when it is not one.
pub(crate) fn parse_time(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).ok()
}

/// RFC 3339 in UTC with whole seconds, as Kubernetes writes times.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `t + d`, or the latest representable time: a far-future point means "not soon", which
/// is what an absurd duration asks for, where `+` would panic.
pub(crate) fn saturating_add(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .unwrap_or(LATEST)
}

/// The latest time `time` represents (year 9999), for saturating arithmetic.
pub(crate) const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);

/// Parses a comma-separated annotation into names.
pub(crate) fn split_list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

// === values in messages ===

/// An invalid value as an error shows it: quoted when it looks like the name, host or
/// duration it should be; only its length when it looks like a credential pasted into the
/// wrong field, since errors reach the CR's status and Events, which many can read.
pub(crate) fn shown(value: &str) -> String {
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
