//! The request bodies of a managed Secret's create and refresh, serialised once per
//! payload: a refresh of 10,000 namespaces sends the same ~9 KB 10,000 times, and only
//! the namespace (create) or the resourceVersion (refresh) differs. Each body is a fixed
//! head, that one JSON string, and a fixed tail.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::reconcile::decide::dockerconfig;

/// The fixed parts of a Secret's create and merge-patch bodies.
#[derive(Clone)]
pub(super) struct SecretBodies {
    /// After `"namespace":NS,` in a create: name, labels, annotations, type and data.
    create_tail: Bytes,
    /// After `"resourceVersion":RV,` in a merge patch: labels, annotations and data.
    patch_tail: Bytes,
}

/// Bodies hold the credential: never shown.
impl std::fmt::Debug for SecretBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBodies").finish_non_exhaustive()
    }
}

const CREATE_HEAD: &[u8] = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"namespace":"#;
const PATCH_HEAD: &[u8] = br#"{"metadata":{"resourceVersion":"#;

// === impl SecretBodies ===

impl SecretBodies {
    /// The bodies for Secret `name` holding `data` (the base64 `.dockerconfigjson` value),
    /// labelled as ours, with `annotations`.
    pub(super) fn new(
        name: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        data: &str,
    ) -> SecretBodies {
        let mut meta = BytesMut::with_capacity(256);
        push_json(&mut meta, b"\"labels\":", labels);
        push_json(&mut meta, b",\"annotations\":", annotations);
        meta.put_u8(b'}');
        let mut payload = BytesMut::with_capacity(data.len() + 64);
        push_json(&mut payload, b",\"data\":{", dockerconfig::DATA_KEY);
        push_json(&mut payload, b":", data);
        payload.put_slice(b"}}");

        let mut create = BytesMut::with_capacity(meta.len() + payload.len() + 128);
        push_json(&mut create, b",\"name\":", name);
        create.put_u8(b',');
        create.put_slice(&meta);
        push_json(&mut create, b",\"type\":", dockerconfig::SECRET_TYPE);
        create.put_slice(&payload);
        let mut patch = BytesMut::with_capacity(meta.len() + payload.len() + 1);
        patch.put_u8(b',');
        patch.put_slice(&meta);
        patch.put_slice(&payload);
        SecretBodies {
            create_tail: create.freeze(),
            patch_tail: patch.freeze(),
        }
    }

    /// The create body of the Secret in `namespace`.
    pub(super) fn create(&self, namespace: &str) -> Bytes {
        splice(CREATE_HEAD, namespace, &self.create_tail)
    }

    /// The merge patch that rewrites the Secret's labels, annotations and data, on the
    /// condition that it is still at `resource_version` (409 otherwise).
    pub(super) fn patch(&self, resource_version: &str) -> Bytes {
        splice(PATCH_HEAD, resource_version, &self.patch_tail)
    }
}

/// `head`, `value` as a JSON string, `tail`.
fn splice(head: &[u8], value: &str, tail: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(head.len() + value.len() + 8 + tail.len());
    push_json(&mut out, head, value);
    out.put_slice(tail);
    out.freeze()
}

/// `prefix`, then `value` serialised.
fn push_json<T: Serialize + ?Sized>(out: &mut BytesMut, prefix: &[u8], value: &T) {
    out.put_slice(prefix);
    // Strings and maps of strings always serialise.
    let _ = serde_json::to_writer(out.writer(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bodies() -> SecretBodies {
        let labels = BTreeMap::from([("app.kubernetes.io/managed-by".into(), "x".into())]);
        let annotations = BTreeMap::from([
            ("ecr.creds.dev/owner".into(), "cr \"quoted\"".into()),
            ("ecr.creds.dev/checksum".into(), "0123".into()),
        ]);
        SecretBodies::new("ecr-pull", &labels, &annotations, "ZGF0YQ==")
    }

    #[test]
    fn the_create_body_is_the_whole_secret_with_the_namespace_spliced_in() {
        let body: serde_json::Value = serde_json::from_slice(&bodies().create("ns-\"1\"")).unwrap();
        assert_eq!(
            body,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "namespace": "ns-\"1\"",
                    "name": "ecr-pull",
                    "labels": {"app.kubernetes.io/managed-by": "x"},
                    "annotations": {"ecr.creds.dev/owner": "cr \"quoted\"", "ecr.creds.dev/checksum": "0123"},
                },
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": "ZGF0YQ=="},
            })
        );
    }

    #[test]
    fn the_patch_body_guards_on_the_resource_version_spliced_in() {
        let body: serde_json::Value = serde_json::from_slice(&bodies().patch("12\"3")).unwrap();
        assert_eq!(
            body,
            json!({
                "metadata": {
                    "resourceVersion": "12\"3",
                    "labels": {"app.kubernetes.io/managed-by": "x"},
                    "annotations": {"ecr.creds.dev/owner": "cr \"quoted\"", "ecr.creds.dev/checksum": "0123"},
                },
                "data": {".dockerconfigjson": "ZGF0YQ=="},
            })
        );
    }

    #[test]
    fn bodies_never_show_the_credential() {
        assert!(!format!("{:?}", bodies()).contains("ZGF0YQ"));
    }
}
