//! A shared pull secret (`secretPolicy: Merge`): a `kubernetes.io/dockerconfigjson`
//! Secret that others write too, in which the operator maintains only its CRs' registry
//! entries. Which hosts are the operator's, for which CR and until when, is recorded in
//! one annotation ([`MERGED_HOSTS_ANNOTATION`]); every other entry, data key, label and
//! annotation is left byte for byte. Pure: the projection the watch keeps, and the edit
//! a write makes of a freshly read Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::dockerconfig::{self, AuthEntry, RawConfig};
use super::registry::RegistryHost;
use crate::k8s::types::Secret;
use crate::reconcile::vocab::{
    format_time, parse_time, Owner, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MERGED_HOSTS_ANNOTATION,
    OWNER_ANNOTATION,
};
use crate::runtime::intern::intern;

/// One host the operator maintains in a shared Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HostRecord {
    /// The ECRPullSecret it is maintained for, and that CR's uid.
    pub owner: String,
    pub owner_uid: String,
    pub refresh_at: String,
    pub expires_at: String,
    /// FNV-1a of the entry's JSON as written: a hand edit of the entry shows.
    pub checksum: String,
}

/// The annotation's content, by host.
pub(crate) type Records = BTreeMap<String, HostRecord>;

/// A Secret named as some merge CR's `secretName`, as the watch keeps it: what decides
/// whether and what to write, never the credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SharedSecret {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub resource_version: String,
    pub shape: Shape,
}

/// What a Secret of a merge CR's name is to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A pull secret the operator may merge into.
    Pull {
        /// The CR that created it, when the operator did (labelled as managed).
        created_by: Option<Arc<str>>,
        /// Created by the operator for a CR with `secretPolicy: Own` (no record
        /// annotation): that CR's alone.
        own_policy: bool,
        /// The hosts the record annotation lists.
        hosts: Vec<MergedHost>,
        /// ECR hosts holding an entry the operator did not record (someone else's).
        unrecorded: Vec<Arc<str>>,
    },
    /// Never written.
    Refused(Refusal),
}

/// One recorded host of a shared Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MergedHost {
    pub host: Arc<str>,
    pub owner: Arc<str>,
    pub owner_uid: Arc<str>,
    pub refresh_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    /// The entry is there, as written.
    pub intact: bool,
}

/// Why a Secret is never merged into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another type: converting it would break what uses it.
    WrongType(String),
    /// `immutable: true`: it cannot be refreshed in place.
    Immutable,
    /// Its `.dockerconfigjson` or record annotation cannot be read: writing would mean
    /// guessing at someone else's data.
    Unreadable(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::WrongType(t) => write!(
                f,
                "it is of type {t}, not {}; it is never converted",
                dockerconfig::SECRET_TYPE
            ),
            Refusal::Immutable => f.write_str("it is immutable, so it cannot be refreshed"),
            Refusal::Unreadable(what) => write!(f, "{what}; it is left alone"),
        }
    }
}

/// What one merge write should do, given the freshly read Secret.
#[derive(Clone)]
pub(crate) struct MergeEdit {
    pub owner: Owner,
    /// Entries to write, by bare host.
    pub set: BTreeMap<String, AuthEntry>,
    pub refresh_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Hosts of this CR's to remove.
    pub remove: Vec<String>,
    /// Take over entries for our hosts that nobody recorded (`spec.adoptExisting`).
    pub adopt: bool,
}

impl std::fmt::Debug for MergeEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeEdit")
            .field("owner", &self.owner)
            .field("hosts", &self.set.keys().collect::<Vec<_>>())
            .field("remove", &self.remove)
            .finish_non_exhaustive()
    }
}

/// The result of an edit: the new data value and record annotation, and the hosts the
/// CR asked for that are someone else's.
#[derive(PartialEq, Eq)]
pub(crate) struct Merged {
    /// The base64 `.dockerconfigjson` value.
    pub data: String,
    /// The record annotation's new value; `None` when no record is left.
    pub records: Option<String>,
    /// Whether anything differs from the Secret as read.
    pub changed: bool,
    /// No entry and no record are left, so a Secret the operator created may go.
    pub empty: bool,
    /// Asked-for hosts left alone, each with why.
    pub conflicts: Vec<String>,
}

/// Everything but `data`, which holds every entry's password.
impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("data", &"<redacted>")
            .field("records", &self.records)
            .field("changed", &self.changed)
            .field("empty", &self.empty)
            .field("conflicts", &self.conflicts)
            .finish()
    }
}

// === impl SharedSecret ===

impl SharedSecret {
    /// The projection the shared-Secret watches keep.
    pub(crate) fn project(secret: &Secret) -> Option<SharedSecret> {
        let meta = &secret.metadata;
        Some(SharedSecret {
            namespace: intern(meta.namespace.as_deref()?),
            name: intern(meta.name.as_deref()?),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            shape: shape(secret),
        })
    }

    /// The hosts recorded for CR `owner` (by name: an earlier CR's of the same name
    /// included).
    pub(crate) fn hosts_of<'a>(
        &'a self,
        owner: &'a str,
    ) -> impl Iterator<Item = &'a MergedHost> + 'a {
        let hosts = match &self.shape {
            Shape::Pull { hosts, .. } => hosts.as_slice(),
            Shape::Refused(_) => &[],
        };
        hosts.iter().filter(move |h| *h.owner == *owner)
    }
}

fn shape(secret: &Secret) -> Shape {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != dockerconfig::SECRET_TYPE {
        return Shape::Refused(Refusal::WrongType(type_.to_string()));
    }
    if secret.immutable == Some(true) {
        return Shape::Refused(Refusal::Immutable);
    }
    let annotations = &secret.metadata.annotations;
    let Ok(records) = parse_records(annotations.get(MERGED_HOSTS_ANNOTATION)) else {
        return Shape::Refused(Refusal::Unreadable(
            "its ecr.creds.dev/merged-hosts annotation is not what this operator writes",
        ));
    };
    let Ok(config) = read_config(secret) else {
        return Shape::Refused(Refusal::Unreadable(
            "its .dockerconfigjson is not a docker config JSON object",
        ));
    };
    let auths = config.auths();
    let hosts = records
        .iter()
        .map(|(host, r)| MergedHost {
            host: intern(host),
            owner: intern(&r.owner),
            owner_uid: intern(&r.owner_uid),
            refresh_at: parse_time(&r.refresh_at),
            expires_at: parse_time(&r.expires_at),
            intact: auths
                .iter()
                .any(|(k, v)| k == host && dockerconfig::checksum(v.get()) == r.checksum),
        })
        .collect();
    let unrecorded: BTreeSet<Arc<str>> = auths
        .iter()
        .filter(|(k, _)| !records.contains_key(k.as_str()))
        .filter_map(|(k, _)| RegistryHost::parse(k))
        .map(|h| intern(&h.host))
        .collect();
    let managed = secret
        .metadata
        .labels
        .get(MANAGED_BY_LABEL)
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE);
    Shape::Pull {
        created_by: annotations
            .get(OWNER_ANNOTATION)
            .filter(|_| managed)
            .map(|o| intern(o)),
        own_policy: managed && !annotations.contains_key(MERGED_HOSTS_ANNOTATION),
        hosts,
        unrecorded: unrecorded.into_iter().collect(),
    }
}

impl crate::runtime::store::Versioned for SharedSecret {
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}

/// The record annotation; absent reads as no records.
pub(crate) fn parse_records(value: Option<&String>) -> Result<Records, serde_json::Error> {
    match value {
        None => Ok(Records::new()),
        Some(v) => serde_json::from_str(v),
    }
}

fn read_config(secret: &Secret) -> Result<RawConfig, dockerconfig::FormatError> {
    match secret.data.get(dockerconfig::DATA_KEY) {
        None => Ok(RawConfig::empty()),
        Some(value) => RawConfig::decode(value),
    }
}

/// Applies `edit` to `current` (just read from the API server): sets the CR's entries
/// where they are free or its own, removes its entries no longer wanted, and leaves
/// everything else exactly as it was. A host another CR maintains, or one with an entry
/// nobody recorded (unless adopting), is a conflict and left alone.
pub(crate) fn edit(current: &Secret, edit: &MergeEdit) -> Result<Merged, Refusal> {
    let shape = shape(current);
    let created_by_us = match &shape {
        Shape::Refused(r) => return Err(r.clone()),
        Shape::Pull { created_by, .. } => created_by.as_deref() == Some(&*edit.owner.name),
    };
    let before = current.metadata.annotations.get(MERGED_HOSTS_ANNOTATION);
    let mut records = parse_records(before).map_err(|_| {
        Refusal::Unreadable("its ecr.creds.dev/merged-hosts annotation is not readable")
    })?;
    let mut config = read_config(current)
        .map_err(|_| Refusal::Unreadable("its .dockerconfigjson is not readable"))?;
    let mut conflicts = Vec::new();
    for host in &edit.remove {
        if records
            .get(host)
            .is_some_and(|r| r.owner_uid == edit.owner.uid)
        {
            records.remove(host);
            config.remove_entry(host);
        }
    }
    for (host, entry) in &edit.set {
        match records.get(host) {
            // Ours, or an earlier CR's of our name (taken over where this CR wants it).
            Some(r) if r.owner == edit.owner.name => {}
            Some(r) => {
                conflicts.push(format!(
                    "host {host} is maintained there for ECRPullSecret {}",
                    r.owner
                ));
                continue;
            }
            None if config.has_entry_for(host) && !(edit.adopt || created_by_us) => {
                conflicts.push(format!(
                    "host {host} has an entry this operator did not write; remove it, or set \
                     spec.adoptExisting to take it over"
                ));
                continue;
            }
            None => {}
        }
        // Only a free or taken-over host replaces other spellings of its key.
        let taken_over = !records.contains_key(host);
        let raw = config.set_entry(host, entry, taken_over);
        records.insert(
            host.clone(),
            HostRecord {
                owner: edit.owner.name.clone(),
                owner_uid: edit.owner.uid.clone(),
                refresh_at: format_time(edit.refresh_at),
                expires_at: format_time(edit.expires_at),
                checksum: dockerconfig::checksum(&raw),
            },
        );
    }
    let data = config.encode();
    let records_value =
        (!records.is_empty()).then(|| serde_json::to_string(&records).unwrap_or_default());
    let data_before = current.data.get(dockerconfig::DATA_KEY);
    let changed = data_before != Some(&data) || before != records_value.as_ref();
    Ok(Merged {
        empty: records.is_empty() && config.auths().is_empty(),
        data,
        records: records_value,
        changed,
        conflicts,
    })
}

/// The record annotation for tests and the demo: whose each host is.
pub(crate) fn owners(secret: &Secret) -> BTreeMap<String, String> {
    parse_records(secret.metadata.annotations.get(MERGED_HOSTS_ANNOTATION))
        .unwrap_or_default()
        .into_iter()
        .map(|(host, r)| (host, r.owner))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use time::macros::datetime;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const OTHER_HOST: &str = "210987654321.dkr.ecr.eu-west-1.amazonaws.com";
    /// Docker Hub and GHCR entries formatted as someone else wrote them (spacing, key
    /// order and an extra field): they must come back byte for byte.
    const FOREIGN: &str = r#"{ "auths": { "https://index.docker.io/v1/": {"auth": "ZG9ja2VyOmh1Yg==", "email": "ops@example.com"}, "ghcr.io":{"username":"bot","password":"gh","auth":"Ym90OmdoCg=="} }, "credsStore": "desktop" }"#;

    fn owner(name: &str) -> Owner {
        Owner {
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn secret(json: &str, annotations: &[(&str, &str)]) -> Secret {
        let mut s = Secret {
            type_: Some(dockerconfig::SECRET_TYPE.into()),
            ..Default::default()
        };
        s.metadata.name = Some("pull".into());
        s.metadata.namespace = Some("a".into());
        s.metadata.resource_version = Some("7".into());
        for (k, v) in annotations {
            s.metadata.annotations.insert(k.to_string(), v.to_string());
        }
        s.data
            .insert(dockerconfig::DATA_KEY.into(), B64.encode(json.as_bytes()));
        s
    }

    fn merge_edit(owner_name: &str, hosts: &[&str], password: &str) -> MergeEdit {
        MergeEdit {
            owner: owner(owner_name),
            set: hosts
                .iter()
                .map(|h| {
                    (
                        h.to_string(),
                        AuthEntry {
                            username: "AWS".into(),
                            password: password.into(),
                            auth: B64.encode(format!("AWS:{password}")),
                        },
                    )
                })
                .collect(),
            refresh_at: datetime!(2026-12-02 18:00 UTC),
            expires_at: datetime!(2026-12-03 00:00 UTC),
            remove: Vec::new(),
            adopt: false,
        }
    }

    fn decoded(data: &str) -> String {
        String::from_utf8(B64.decode(data).unwrap()).unwrap()
    }

    /// Applies `merged` to `s` as the API server would.
    fn applied(mut s: Secret, merged: &Merged) -> Secret {
        s.data
            .insert(dockerconfig::DATA_KEY.into(), merged.data.clone());
        match &merged.records {
            Some(r) => s
                .metadata
                .annotations
                .insert(MERGED_HOSTS_ANNOTATION.into(), r.clone()),
            None => s.metadata.annotations.remove(MERGED_HOSTS_ANNOTATION),
        };
        s
    }

    #[test]
    fn other_entries_and_keys_are_kept_byte_for_byte() {
        let s = secret(FOREIGN, &[]);
        let merged = edit(&s, &merge_edit("a", &[HOST], "pw1")).unwrap();
        assert!(merged.changed && merged.conflicts.is_empty());
        let json = decoded(&merged.data);
        assert!(json.contains(
            r#""https://index.docker.io/v1/":{"auth": "ZG9ja2VyOmh1Yg==", "email": "ops@example.com"}"#
        ), "{json}");
        assert!(
            json.contains(r#""ghcr.io":{"username":"bot","password":"gh","auth":"Ym90OmdoCg=="}"#)
        );
        assert!(
            json.contains(r#""credsStore":"desktop""#)
                || json.contains(r#""credsStore": "desktop""#)
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["auths"][HOST]["password"], "pw1");
        assert_eq!(owners(&applied(s.clone(), &merged))[HOST], "a");

        // The projection sees our intact host, and a refresh touches only our entry.
        let s = applied(s, &merged);
        let view = SharedSecret::project(&s).unwrap();
        let Shape::Pull {
            hosts, unrecorded, ..
        } = &view.shape
        else {
            panic!("{view:?}")
        };
        assert!(hosts[0].intact && *hosts[0].owner == *"a" && unrecorded.is_empty());
        let again = edit(&s, &merge_edit("a", &[HOST], "pw2")).unwrap();
        let before = decoded(&merged.data);
        let after = decoded(&again.data);
        assert_eq!(
            before
                .replace("pw1", "")
                .replace(&B64.encode("AWS:pw1"), ""),
            after.replace("pw2", "").replace(&B64.encode("AWS:pw2"), "")
        );
        // The same token again changes nothing.
        let s = applied(s, &again);
        assert!(!edit(&s, &merge_edit("a", &[HOST], "pw2")).unwrap().changed);
    }

    #[test]
    fn n8_merged_debug_shows_no_password() {
        let merged = edit(&secret(FOREIGN, &[]), &merge_edit("a", &[HOST], "n8-pw")).unwrap();
        assert!(decoded(&merged.data).contains("n8-pw"), "the data holds it");
        let shown = format!("{merged:?}");
        assert!(shown.contains("changed: true"), "{shown}");
        for secret in [
            merged.data.as_str(),
            "n8-pw",
            &B64.encode("AWS:n8-pw"),
            "Ym90OmdoCg==",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_host_of_another_cr_or_of_nobody_is_a_conflict_unless_adopted() {
        let s = secret(FOREIGN, &[]);
        let s = applied(
            s.clone(),
            &edit(&s, &merge_edit("a", &[HOST], "pw")).unwrap(),
        );
        let theirs = edit(&s, &merge_edit("b", &[HOST, OTHER_HOST], "x")).unwrap();
        assert_eq!(theirs.conflicts.len(), 1, "{:?}", theirs.conflicts);
        assert!(theirs.conflicts[0].contains("ECRPullSecret a"));
        let value: serde_json::Value = serde_json::from_str(&decoded(&theirs.data)).unwrap();
        assert_eq!(
            value["auths"][HOST]["password"], "pw",
            "a's entry untouched"
        );
        assert_eq!(
            value["auths"][OTHER_HOST]["password"], "x",
            "b's free host written"
        );

        let hand_written =
            format!(r#"{{"auths":{{"https://{HOST}":{{"auth":"aGFuZDp3cml0dGVu"}}}}}}"#);
        let s = secret(&hand_written, &[]);
        let refused = edit(&s, &merge_edit("a", &[HOST], "pw")).unwrap();
        assert!(!refused.changed && refused.conflicts[0].contains("did not write"));
        let mut adopting = merge_edit("a", &[HOST], "pw");
        adopting.adopt = true;
        let taken = edit(&s, &adopting).unwrap();
        let json = decoded(&taken.data);
        assert!(
            !json.contains("https://"),
            "the variant key is replaced: {json}"
        );
        assert!(json.contains("\"pw\""));
    }

    #[test]
    fn removal_takes_only_our_hosts_and_says_when_nothing_is_left() {
        let s = secret(FOREIGN, &[]);
        let s = applied(
            s.clone(),
            &edit(&s, &merge_edit("a", &[HOST], "pw")).unwrap(),
        );
        let s = applied(
            s.clone(),
            &edit(&s, &merge_edit("b", &[OTHER_HOST], "x")).unwrap(),
        );
        let mut remove = merge_edit("a", &[], "");
        remove.remove = vec![HOST.to_string(), OTHER_HOST.to_string()];
        let merged = edit(&s, &remove).unwrap();
        let after = applied(s, &merged);
        assert_eq!(owners(&after).into_keys().collect::<Vec<_>>(), [OTHER_HOST]);
        let json = decoded(&merged.data);
        assert!(!json.contains(HOST) && json.contains("ghcr.io") && !merged.empty);

        let only_ours = secret(r#"{"auths":{}}"#, &[]);
        let only_ours = applied(
            only_ours.clone(),
            &edit(&only_ours, &merge_edit("a", &[HOST], "pw")).unwrap(),
        );
        let mut remove = merge_edit("a", &[], "");
        remove.remove = vec![HOST.to_string()];
        let merged = edit(&only_ours, &remove).unwrap();
        assert!(merged.empty && merged.records.is_none());
    }

    #[test]
    fn other_types_immutable_and_unreadable_secrets_are_refused() {
        let mut opaque = secret(FOREIGN, &[]);
        opaque.type_ = Some("Opaque".into());
        assert_eq!(
            edit(&opaque, &merge_edit("a", &[HOST], "pw")),
            Err(Refusal::WrongType("Opaque".into()))
        );
        let mut frozen = secret(FOREIGN, &[]);
        frozen.immutable = Some(true);
        assert_eq!(
            SharedSecret::project(&frozen).unwrap().shape,
            Shape::Refused(Refusal::Immutable)
        );
        for bad in [
            "[]",
            "not json",
            r#"{"auths":[]}"#,
            r#"{"auths":{},"auths":{}}"#,
        ] {
            let s = secret(bad, &[]);
            assert!(
                matches!(
                    edit(&s, &merge_edit("a", &[HOST], "pw")),
                    Err(Refusal::Unreadable(_))
                ),
                "{bad}"
            );
        }
        let s = secret(FOREIGN, &[(MERGED_HOSTS_ANNOTATION, "garbage")]);
        assert!(matches!(
            SharedSecret::project(&s).unwrap().shape,
            Shape::Refused(Refusal::Unreadable(_))
        ));
    }

    #[test]
    fn a_hand_edited_entry_is_not_intact() {
        let s = secret(FOREIGN, &[]);
        let merged = edit(&s, &merge_edit("a", &[HOST], "pw")).unwrap();
        let mut s = applied(s, &merged);
        let tampered = decoded(&merged.data).replace("\"pw\"", "\"hacked\"");
        s.data
            .insert(dockerconfig::DATA_KEY.into(), B64.encode(tampered));
        let view = SharedSecret::project(&s).unwrap();
        assert!(!view.hosts_of("a").next().unwrap().intact);
    }
}
