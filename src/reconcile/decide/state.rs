//! What the operator caches of the objects it watches: only the fields decisions need,
//! so memory stays proportional to what it manages.

use std::sync::Arc;

use time::OffsetDateTime;

use super::dockerconfig;
use super::select::NamespaceView;
use crate::k8s::types::{Namespace, ObjectMeta, Secret, SecretAnswer, ServiceAccount};
use crate::reconcile::vocab::{
    parse_time, split_list, Owner, CHECKSUM_ANNOTATION, EXPIRES_ANNOTATION,
    MERGED_HOSTS_ANNOTATION, NAME_LABEL, OWNER_ANNOTATION, OWNER_UID_ANNOTATION,
    REFRESH_ANNOTATION, REGISTRIES_ANNOTATION, SA_OWNED_ANNOTATION,
};
use crate::runtime::compact::{ShortStr, Uid};
use crate::runtime::intern::intern;

/// Whose a managed Secret is, from a CR's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ownership {
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
pub(crate) struct ManagedSecret {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// The Secret's own uid and version: preconditions of a delete.
    pub uid: Uid,
    pub resource_version: ShortStr,
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
pub(crate) struct SaView {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub resource_version: ShortStr,
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
    pub(crate) fn project(secret: &Secret) -> Option<ManagedSecret> {
        let data = secret.data.get(dockerconfig::DATA_KEY).map(String::as_str);
        let type_ = secret.type_.as_deref();
        Self::project_parts(&secret.metadata, type_, |sum| {
            data.is_some_and(|d| dockerconfig::checksum_matches(d, sum))
        })
    }

    /// The projection of our write's answer. `sent` is the data value we wrote and its
    /// checksum: an answer holding that very value is checked by comparing bytes, not by
    /// hashing them again (the value is about 8.5 KB).
    ///
    /// A metadata-only answer (`PartialObjectMetadata`, which our writes ask for) holds
    /// what the write set: our create and merge patch both set this data value, so the
    /// data is taken as `sent` and checked through the checksum annotation. Its type
    /// cannot be read and is taken as ours (a create sets it; it is immutable). This
    /// projection only stands in front of the watch: its echo, the whole object, replaces
    /// it, so a webhook that changed the data, or an old Secret of another type, is seen
    /// then.
    pub(crate) fn project_written(
        answer: &SecretAnswer<'_>,
        sent: (&str, &str),
    ) -> Option<ManagedSecret> {
        let (value, value_sum) = sent;
        if answer.is_metadata_only() {
            return Self::project_parts(&answer.metadata, Some(dockerconfig::SECRET_TYPE), |sum| {
                sum == value_sum
            });
        }
        let data = answer.data.get(dockerconfig::DATA_KEY).map(|d| &*d.0);
        Self::project_parts(
            &answer.metadata,
            answer.type_.as_deref(),
            |sum| match data {
                Some(d) if d == value => sum == value_sum,
                Some(d) => dockerconfig::checksum_matches(d, sum),
                None => false,
            },
        )
    }

    /// `data_matches` says whether the data agrees with the checksum annotation's value.
    fn project_parts(
        meta: &ObjectMeta,
        type_: Option<&str>,
        data_matches: impl FnOnce(&str) -> bool,
    ) -> Option<ManagedSecret> {
        let annotations = &meta.annotations;
        if annotations.contains_key(MERGED_HOSTS_ANNOTATION) {
            return None;
        }
        let intact = annotations
            .get(CHECKSUM_ANNOTATION)
            .is_some_and(|sum| data_matches(sum));
        let owner_uid = annotations.get(OWNER_UID_ANNOTATION).map(|u| intern(u));
        Some(ManagedSecret {
            namespace: intern(meta.namespace.as_deref()?),
            name: intern(meta.name.as_deref()?),
            uid: Uid::new(meta.uid.as_deref().unwrap_or_default()),
            resource_version: ShortStr::new(meta.resource_version.as_deref().unwrap_or_default()),
            owner: intern(annotations.get(OWNER_ANNOTATION).map_or("", String::as_str)),
            intact: intact && owner_uid.is_some() && type_ == Some(dockerconfig::SECRET_TYPE),
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
    pub(crate) fn ownership(&self, owner: &Owner) -> Ownership {
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
    pub(crate) fn project(sa: &ServiceAccount) -> Option<SaView> {
        let meta = &sa.metadata;
        Some(SaView {
            owned: split_list(meta.annotations.get(SA_OWNED_ANNOTATION))
                .iter()
                .map(|n| intern(n))
                .collect(),
            has_annotations: !meta.annotations.is_empty(),
            namespace: intern(meta.namespace.as_deref()?),
            name: intern(meta.name.as_deref()?),
            resource_version: ShortStr::new(meta.resource_version.as_deref().unwrap_or_default()),
            pull_secrets: sa
                .image_pull_secrets
                .iter()
                .map(|r| intern(&r.name))
                .collect(),
        })
    }
}

/// The Namespace projection: its name, and its labels shared ([`intern`]).
pub(crate) fn project_namespace(ns: &Namespace) -> Option<NamespaceView> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A managed Secret's JSON holding `data`, whose checksum annotation says `sum`.
    fn secret_json(data: &str, sum: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "metadata": {"namespace": "ns", "name": "s", "uid": "u", "resourceVersion": "9",
                "annotations": {OWNER_ANNOTATION: "cr", OWNER_UID_ANNOTATION: "cr-uid",
                                CHECKSUM_ANNOTATION: sum}},
            "type": dockerconfig::SECRET_TYPE,
            "data": {dockerconfig::DATA_KEY: data},
        }))
        .unwrap()
    }

    /// Our write's answer is projected as the watch would project the same object, whether
    /// it holds what we sent or not (a webhook may have changed it).
    #[test]
    fn a_written_answer_projects_as_its_watch_event_would() {
        let sent = "c2VudA==";
        let sent_sum = dockerconfig::checksum(sent);
        let other = "b3RoZXI=";
        for (data, sum) in [
            (sent, sent_sum.clone()),
            (sent, "0000000000000000".to_string()),
            (other, dockerconfig::checksum(other)),
            (other, sent_sum.clone()),
        ] {
            let raw = secret_json(data, &sum);
            let watched = ManagedSecret::project(&serde_json::from_slice(&raw).unwrap());
            let answer: SecretAnswer = serde_json::from_slice(&raw).unwrap();
            let written = ManagedSecret::project_written(&answer, (sent, &sent_sum));
            assert_eq!(written, watched, "data {data}, checksum {sum}");
        }
        let raw = secret_json(sent, &sent_sum);
        let answer: SecretAnswer = serde_json::from_slice(&raw).unwrap();
        assert!(
            ManagedSecret::project_written(&answer, (sent, &sent_sum))
                .unwrap()
                .intact
        );
    }

    /// A metadata-only answer projects as the whole object holding the data we sent would:
    /// intact only while the checksum annotation is the one we sent.
    #[test]
    fn a_metadata_only_answer_projects_as_the_object_holding_what_we_sent() {
        let sent = "c2VudA==";
        let sent_sum = dockerconfig::checksum(sent);
        for sum in [sent_sum.clone(), "0000000000000000".to_string()] {
            let whole = secret_json(sent, &sum);
            let watched = ManagedSecret::project(&serde_json::from_slice(&whole).unwrap());
            let whole: serde_json::Value = serde_json::from_slice(&whole).unwrap();
            let partial = serde_json::to_vec(&serde_json::json!({
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": whole["metadata"]}))
            .unwrap();
            let answer: SecretAnswer = serde_json::from_slice(&partial).unwrap();
            assert!(answer.is_metadata_only() && answer.data.is_empty());
            let written = ManagedSecret::project_written(&answer, (sent, &sent_sum));
            assert_eq!(written, watched, "checksum {sum}");
        }
    }
}

/// What the watch caches hold per namespace of a cluster with one CR, in bytes, as
/// README's Benchmarks section lists it.
#[cfg(test)]
mod heap_per_namespace {
    use std::mem::size_of;
    use std::sync::Arc;

    use super::{ManagedSecret, NamespaceView, SaView};
    use crate::runtime::store::ObjectKey;

    /// A map slot: the key and the `Arc` pointer to the projection.
    const SLOT: usize = size_of::<ObjectKey>() + size_of::<Arc<()>>();
    /// An `Arc`'s counts, in front of the value.
    const ARC: usize = 16;

    /// Bytes a namespace costs, heap strings at the bench's lengths (a 10-character
    /// namespace name with one label; uids and resourceVersions are kept inline). Not
    /// counted: interned strings the whole cluster shares (Secret name, owner, registries,
    /// label keys and values, `default`), the maps' spare slots (up to about half again)
    /// and the allocator's own overhead per allocation.
    fn per_namespace() -> [(&'static str, usize); 4] {
        let name = 10;
        [
            (
                "namespace name, interned once for the three caches' keys",
                ARC + name,
            ),
            (
                "Namespace: slot + view + name + one label",
                SLOT + ARC + size_of::<NamespaceView>() + name + 32,
            ),
            (
                "ServiceAccount `default`: slot + view + one pull secret + one owned entry",
                SLOT + ARC + size_of::<SaView>() + 16 + 16,
            ),
            (
                "managed Secret: slot + view (its uid and resourceVersion inline)",
                SLOT + ARC + size_of::<ManagedSecret>(),
            ),
        ]
    }

    #[test]
    fn stays_as_listed_in_the_readme() {
        let parts = per_namespace();
        for (what, bytes) in parts {
            eprintln!("{bytes:>5}  {what}");
        }
        let total: usize = parts.iter().map(|(_, b)| b).sum();
        eprintln!("{total:>5}  in all");
        assert!(
            total <= 700,
            "{total} bytes a namespace: update README's figures"
        );
    }
}
