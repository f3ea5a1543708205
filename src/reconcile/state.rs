//! What the operator caches of the objects it watches: only the fields decisions need,
//! so memory stays proportional to what it manages.

use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::dockerconfig;
use super::select::NamespaceView;
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::runtime::intern::intern;

/// The label that marks Secrets we manage; the Secret watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "ecr-creds-refresher";
/// `MANAGED_BY_LABEL=MANAGED_BY_VALUE`, for watches.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=ecr-creds-refresher";
/// The owning CR's name (an annotation: CR names may exceed a label value's 63 chars).
pub const OWNER_ANNOTATION: &str = "ecr.creds.dev/owner";
/// The owning CR's uid: a later CR that reuses a deleted CR's name is another owner.
pub const OWNER_UID_ANNOTATION: &str = "ecr.creds.dev/owner-uid";
pub const EXPIRES_ANNOTATION: &str = "ecr.creds.dev/expires-at";
pub const REFRESH_ANNOTATION: &str = "ecr.creds.dev/refresh-at";
pub const REGISTRIES_ANNOTATION: &str = "ecr.creds.dev/registries";
pub const CHECKSUM_ANNOTATION: &str = "ecr.creds.dev/checksum";
/// On a ServiceAccount: the `imagePullSecrets` entries we added (comma-separated), so we
/// only ever remove our own.
pub const SA_OWNED_ANNOTATION: &str = "ecr.creds.dev/image-pull-secrets";

/// The CR a reconcile acts for: its name, and its uid, which tells it apart from an
/// earlier CR of the same name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

/// Whose a managed Secret is, from a CR's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This CR's (or written before owners carried a uid: rewritten at the next write).
    Ours,
    /// Written for an earlier CR of the same name, deleted with `deletionPolicy: Retain`:
    /// never deleted on this CR's behalf, taken over only where this CR targets it.
    Orphan,
    /// Another CR's.
    Other(String),
}

/// A managed Secret as cached. Values repeated across thousands of Secrets (names, owner,
/// registries) are shared ([`intern`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedSecret {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// The Secret's own uid and version: preconditions of a delete.
    pub uid: String,
    pub resource_version: String,
    pub owner: Arc<str>,
    pub owner_uid: Option<Arc<str>>,
    pub expires_at: Option<OffsetDateTime>,
    pub refresh_at: Option<OffsetDateTime>,
    /// Sorted, comma-separated hosts it covers.
    pub registries: Arc<str>,
    /// The checksum annotation agrees with the data (nobody edited it by hand) and the
    /// owner's uid is recorded.
    pub intact: bool,
}

/// A ServiceAccount as cached, its names shared ([`intern`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaView {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub resource_version: String,
    pub pull_secrets: Vec<Arc<str>>,
    /// Entries we added (from [`SA_OWNED_ANNOTATION`]).
    pub owned: Vec<Arc<str>>,
    /// Whether `metadata.annotations` exists (a JSON patch must create it first).
    pub has_annotations: bool,
}

// === impl ManagedSecret ===

impl ManagedSecret {
    /// The projection the Secret watcher keeps. Data is reduced to "intact or not". A
    /// shared pull secret the operator created for a merge CR is not one: the shared
    /// Secrets' watch keeps it (`shared::SharedSecret`).
    pub fn project(secret: &Secret) -> Option<ManagedSecret> {
        let meta = &secret.metadata;
        let annotations = &meta.annotations;
        if annotations.contains_key(super::shared::MERGED_HOSTS_ANNOTATION) {
            return None;
        }
        let data = secret.data.get(dockerconfig::DATA_KEY);
        let intact = match (data, annotations.get(CHECKSUM_ANNOTATION)) {
            (Some(d), Some(sum)) => &dockerconfig::checksum(d) == sum,
            _ => false,
        };
        let owner_uid = annotations.get(OWNER_UID_ANNOTATION).map(|u| intern(u));
        Some(ManagedSecret {
            namespace: intern(meta.namespace.as_deref()?),
            name: intern(meta.name.as_deref()?),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            owner: intern(annotations.get(OWNER_ANNOTATION).map_or("", String::as_str)),
            intact: intact
                && owner_uid.is_some()
                && secret.type_.as_deref() == Some(dockerconfig::SECRET_TYPE),
            owner_uid,
            expires_at: annotations
                .get(EXPIRES_ANNOTATION)
                .and_then(|v| parse_time(v)),
            refresh_at: annotations
                .get(REFRESH_ANNOTATION)
                .and_then(|v| parse_time(v)),
            registries: intern(
                annotations
                    .get(REGISTRIES_ANNOTATION)
                    .map_or("", String::as_str),
            ),
        })
    }

    /// Whose this Secret is, seen by `owner`.
    pub fn ownership(&self, owner: &Owner) -> Ownership {
        if *self.owner != *owner.name {
            return Ownership::Other(self.owner.to_string());
        }
        match &self.owner_uid {
            Some(uid) if **uid != *owner.uid => Ownership::Orphan,
            _ => Ownership::Ours,
        }
    }
}

// === impl SaView ===

impl SaView {
    pub fn project(sa: &ServiceAccount) -> Option<SaView> {
        let meta = &sa.metadata;
        Some(SaView {
            owned: split_list(meta.annotations.get(SA_OWNED_ANNOTATION))
                .iter()
                .map(|n| intern(n))
                .collect(),
            has_annotations: !meta.annotations.is_empty(),
            namespace: intern(meta.namespace.as_deref()?),
            name: intern(meta.name.as_deref()?),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            pull_secrets: sa
                .image_pull_secrets
                .iter()
                .map(|r| intern(&r.name))
                .collect(),
        })
    }
}

/// The label every namespace carries with its own name; selectors see it, the cache
/// does not store it (see [`NamespaceView::label`]).
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The Namespace projection: its name, and its labels shared ([`intern`]).
pub fn project_namespace(ns: &Namespace) -> Option<NamespaceView> {
    Some(NamespaceView {
        terminating: ns.metadata.deletion_timestamp.is_some(),
        name: ns.metadata.name.clone()?,
        labels: ns
            .metadata
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != NAME_LABEL)
            .map(|(k, v)| (intern(k), intern(v)))
            .collect(),
    })
}

/// Parses a comma-separated annotation into names.
pub fn split_list(value: Option<&String>) -> Vec<String> {
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

/// An RFC 3339 time as [`format_time`] writes it; `None` when it is not one.
pub fn parse_time(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).ok()
}

/// RFC 3339 in UTC with whole seconds, as Kubernetes writes times.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl crate::runtime::store::Versioned for ManagedSecret {
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}

impl crate::runtime::store::Versioned for SaView {
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}
