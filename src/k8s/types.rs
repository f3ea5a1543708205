//! Minimal serde types for the parts of Kubernetes objects the operator reads or writes.
//!
//! Only the fields we use are modelled; everything else is carried in `extra` where a
//! round trip must not lose it, or dropped where we only read (to keep caches small).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metadata` of any object. Unknown fields are dropped: we never PUT an object we
/// decoded with this type unless we own all of its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Opaque: compare only for equality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// `metadata` of a list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Present only when another page follows; a page may be short or empty.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// A page of a list answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectList<T> {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// A `metav1.Status`, as returned with non-2xx answers and in watch ERROR events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub code: u16,
}

/// One decoded watch event. BOOKMARK carries only `metadata.resourceVersion`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    Bookmark { resource_version: String },
    Error(ApiStatus),
}

/// Anything with `metadata`, so generic machinery can key and version it.
pub(crate) trait Resource {
    fn meta(&self) -> &ObjectMeta;
}

/// A Namespace as cached: name, labels and phase are all the operator needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Namespace {
    pub metadata: ObjectMeta,
}

/// A Secret. `data` values are base64 strings, as on the wire. Its `Debug` shows the
/// keys of `data`, never the values: a stray `{:?}` must not put a credential in a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub metadata: ObjectMeta,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// An immutable Secret cannot be refreshed in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type", &self.type_)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A Secret as an answer to our write, read only for the cache: the `data` values are
/// borrowed from the answer's bytes instead of copied (a managed Secret's is ~8.5 KB).
/// The answer may be the Secret's metadata only (`PartialObjectMetadata`, when asked for
/// and served). No `Debug`: the values are credentials.
#[derive(Deserialize)]
pub(crate) struct SecretAnswer<'a> {
    #[serde(default, borrow)]
    pub kind: Option<Text<'a>>,
    pub metadata: ObjectMeta,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default, borrow)]
    pub data: BTreeMap<Text<'a>, Text<'a>>,
}

// === impl SecretAnswer ===

impl SecretAnswer<'_> {
    /// Whether the server sent the metadata only: no type, no data to read.
    pub(crate) fn is_metadata_only(&self) -> bool {
        self.kind
            .as_ref()
            .is_some_and(|k| k.0 == "PartialObjectMetadata")
    }
}

/// A JSON string borrowed from the input where it holds no escape, else copied. (serde's
/// own `Cow<str>` always copies inside a map.)
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// `{name: ...}`, as in a ServiceAccount's `imagePullSecrets`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
}

/// A ServiceAccount as cached: name, resourceVersion and imagePullSecrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccount {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// A ConfigMap: the operator reads one, its role grants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigMap {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

impl Resource for ConfigMap {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}
impl Resource for Namespace {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}
impl Resource for Secret {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}
impl Resource for ServiceAccount {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_answer_borrows_its_data_and_still_reads_escaped_values() {
        let raw = br#"{"metadata":{"name":"s","resourceVersion":"7"},"type":"t","data":{"a":"YWJj","b\u0062":"x\/y"}}"#;
        let answer: SecretAnswer = serde_json::from_slice(raw).unwrap();
        assert!(matches!(
            answer.data.get("a"),
            Some(Text(Cow::Borrowed("YWJj")))
        ));
        assert_eq!(answer.data.get("bb").map(|v| &*v.0), Some("x/y"));
        assert_eq!(answer.metadata.resource_version.as_deref(), Some("7"));
    }

    /// Hardening finding 10: a Secret's data showed in Debug output.
    #[test]
    fn finding_10_a_secrets_debug_shows_no_data() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "k", "namespace": "n"},
            "data": {"AWS_SECRET_ACCESS_KEY": "c3VwZXItc2VjcmV0LWtleS12YWx1ZQ=="}}))
        .unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains("c3VwZXItc2VjcmV0"), "{shown}");
    }

    #[test]
    fn a_secrets_debug_shows_its_keys_never_its_values() {
        let s = Secret {
            data: BTreeMap::from([("AWS_SECRET_ACCESS_KEY".into(), "c2VjcmV0LXZhbHVl".into())]),
            ..Default::default()
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY"), "{shown}");
        assert!(!shown.contains("c2VjcmV0LXZhbHVl"), "{shown}");
    }
}
