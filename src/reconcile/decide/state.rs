//! What the operator caches of the objects it watches: only the fields decisions need,
//! so memory stays proportional to what it manages.

use std::sync::Arc;

use time::OffsetDateTime;

use super::dockerconfig;
use super::select::NamespaceView;
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::reconcile::vocab::{
    parse_time, split_list, Owner, CHECKSUM_ANNOTATION, EXPIRES_ANNOTATION,
    MERGED_HOSTS_ANNOTATION, NAME_LABEL, OWNER_ANNOTATION, OWNER_UID_ANNOTATION,
    REFRESH_ANNOTATION, REGISTRIES_ANNOTATION, SA_OWNED_ANNOTATION,
};
use crate::runtime::intern::intern;

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
        if annotations.contains_key(MERGED_HOSTS_ANNOTATION) {
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
