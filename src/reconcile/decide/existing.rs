//! What a create that met an existing Secret should do instead. The executor reads the
//! Secret and acts on the answer; the decision is here, so it is tested as a table.

use super::dockerconfig;
use crate::k8s::types::Secret;
use crate::reconcile::vocab::{
    CHECKSUM_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MERGED_HOSTS_ANNOTATION,
    OWNER_ANNOTATION, OWNER_UID_ANNOTATION,
};

/// The Secret a CR wants in place: who writes it, its payload and annotations, and the
/// registry hosts the payload covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted<'a> {
    pub owner_name: &'a str,
    pub data: &'a str,
    pub annotations: &'a std::collections::BTreeMap<String, String>,
    pub hosts: &'a [String],
    /// The CR opted in to adopting an unmanaged Secret of the same name.
    pub adopt: bool,
}

/// The answer for an existing Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Not ours and not adoptable (another owner, a shared pull secret, or a foreign one
    /// holding hosts the CR does not serve): left alone and reported.
    Conflict,
    /// Ours (our watch has not yet seen our own earlier write, or an earlier CR of our
    /// name wrote it), with the wanted payload and untouched by hand: nothing to write.
    Current,
    /// Ours, but stale or edited by hand: rewritten.
    Stale,
    /// Unmanaged, the CR opted in, and every host it holds is one of the CR's: taken over.
    Adopt,
}

/// Decides what a create that found `existing` in place should do for `wanted`.
pub(crate) fn decide(existing: &Secret, wanted: &Wanted<'_>) -> Existing {
    let meta = &existing.metadata;
    if meta.annotations.contains_key(MERGED_HOSTS_ANNOTATION) {
        // A shared pull secret: only merge CRs write there, entry by entry.
        return Existing::Conflict;
    }
    let managed = meta.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE);
    if managed
        && meta.annotations.get(OWNER_ANNOTATION).map(String::as_str) == Some(wanted.owner_name)
    {
        // Same payload, and not edited by hand since (the data matches it too).
        let same = [CHECKSUM_ANNOTATION, OWNER_UID_ANNOTATION]
            .iter()
            .all(|k| meta.annotations.get(*k) == wanted.annotations.get(*k))
            && existing
                .data
                .get(dockerconfig::DATA_KEY)
                .map(String::as_str)
                == Some(wanted.data);
        return if same {
            Existing::Current
        } else {
            Existing::Stale
        };
    }
    let adoptable = wanted.adopt
        && !meta.labels.contains_key(MANAGED_BY_LABEL)
        && existing.type_.as_deref() == Some(dockerconfig::SECRET_TYPE)
        && existing
            .data
            .get(dockerconfig::DATA_KEY)
            .is_some_and(|d| dockerconfig::holds_only(d, wanted.hosts));
    if adoptable {
        Existing::Adopt
    } else {
        Existing::Conflict
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    use super::*;

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn payload(host: &str) -> String {
        B64.encode(format!(r#"{{"auths":{{"{host}":{{"auth":"dTpw"}}}}}}"#))
    }

    fn secret(labels: &[(&str, &str)], annotations: &[(&str, &str)], data: &str) -> Secret {
        let mut s = Secret {
            type_: Some(dockerconfig::SECRET_TYPE.to_string()),
            ..Secret::default()
        };
        for (k, v) in labels {
            s.metadata.labels.insert(k.to_string(), v.to_string());
        }
        for (k, v) in annotations {
            s.metadata.annotations.insert(k.to_string(), v.to_string());
        }
        s.data
            .insert(dockerconfig::DATA_KEY.to_string(), data.to_string());
        s
    }

    #[test]
    fn finding_2_adopt_or_conflict_is_decided_without_a_server() {
        let data = payload(HOST);
        let hosts = vec![HOST.to_string()];
        let mut annotations = BTreeMap::new();
        annotations.insert(CHECKSUM_ANNOTATION.to_string(), "sum".to_string());
        annotations.insert(OWNER_UID_ANNOTATION.to_string(), "uid-1".to_string());
        let wanted = |adopt| Wanted {
            owner_name: "cr",
            data: &data,
            annotations: &annotations,
            hosts: &hosts,
            adopt,
        };
        let ours = [(MANAGED_BY_LABEL, MANAGED_BY_VALUE)];
        let ours_ann = [
            (OWNER_ANNOTATION, "cr"),
            (CHECKSUM_ANNOTATION, "sum"),
            (OWNER_UID_ANNOTATION, "uid-1"),
        ];
        let stale_ann = [
            (OWNER_ANNOTATION, "cr"),
            (CHECKSUM_ANNOTATION, "old"),
            (OWNER_UID_ANNOTATION, "uid-1"),
        ];
        let other_ann = [(OWNER_ANNOTATION, "other")];
        let shared_ann = [(MERGED_HOSTS_ANNOTATION, "{}")];
        let foreign = payload("ghcr.io");
        let table: Vec<(&str, Secret, bool, Existing)> = vec![
            (
                "ours and current",
                secret(&ours, &ours_ann, &data),
                false,
                Existing::Current,
            ),
            (
                "ours, hand-edited data",
                secret(&ours, &ours_ann, &foreign),
                false,
                Existing::Stale,
            ),
            (
                "ours, stale checksum",
                secret(&ours, &stale_ann, &data),
                false,
                Existing::Stale,
            ),
            (
                "another CR's",
                secret(&ours, &other_ann, &data),
                true,
                Existing::Conflict,
            ),
            (
                "a shared pull secret",
                secret(&[], &shared_ann, &data),
                true,
                Existing::Conflict,
            ),
            (
                "unmanaged, not opted in",
                secret(&[], &[], &data),
                false,
                Existing::Conflict,
            ),
            (
                "unmanaged, opted in",
                secret(&[], &[], &data),
                true,
                Existing::Adopt,
            ),
            (
                "unmanaged, foreign hosts",
                secret(&[], &[], &foreign),
                true,
                Existing::Conflict,
            ),
        ];
        for (case, existing, adopt, want) in table {
            assert_eq!(decide(&existing, &wanted(adopt)), want, "{case}");
        }
        let mut opaque = secret(&[], &[], &data);
        opaque.type_ = Some("Opaque".to_string());
        assert_eq!(
            decide(&opaque, &wanted(true)),
            Existing::Conflict,
            "an Opaque Secret"
        );
    }
}
