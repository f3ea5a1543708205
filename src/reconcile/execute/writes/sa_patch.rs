//! The JSON patch of a ServiceAccount edit: our entry added to or removed from
//! `imagePullSecrets`, and our ownership annotation kept in step, all guarded by a `test`
//! on the resourceVersion the edit was decided on.

use std::collections::BTreeMap;

use crate::reconcile::decide::plan::SaChange;
use crate::reconcile::decide::state::SaView;
use crate::reconcile::vocab::SA_OWNED_ANNOTATION;

/// One RFC 6902 operation of a ServiceAccount edit. Typed, so the patch serialises
/// straight to bytes: built as a `serde_json::Value` it held a map per pull-secret entry
/// (about 650 bytes each), and with 100 CRs sharing a namespace the edits waiting for a
/// request slot held 4 MB (heaptrack, 100 CRs x 100 namespaces).
#[derive(Debug, serde::Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(super) enum SaOp<'a> {
    Test { path: &'static str, value: &'a str },
    Add { path: &'a str, value: SaValue<'a> },
    Remove { path: &'a str },
}

/// The value an [`SaOp::Add`] sets.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub(super) enum SaValue<'a> {
    /// `imagePullSecrets`: `[{"name": ...}]`.
    PullSecrets(Vec<PullSecretRef<'a>>),
    /// A fresh `metadata.annotations` holding only our annotation.
    Annotations(BTreeMap<&'static str, &'a str>),
    Text(&'a str),
}

/// One `imagePullSecrets` entry.
#[derive(Debug, serde::Serialize)]
pub(super) struct PullSecretRef<'a> {
    name: &'a str,
}

/// The JSON patch that makes `sa` hold `change`, guarded by a `test` on its
/// resourceVersion; `owned` is our annotation's new value and `key` its JSON pointer.
pub(super) fn sa_patch<'a>(
    sa: &'a SaView,
    change: &'a SaChange,
    owned: &'a str,
    key: &'a str,
) -> Vec<SaOp<'a>> {
    let mut ops = vec![
        SaOp::Test {
            path: "/metadata/resourceVersion",
            value: &sa.resource_version,
        },
        SaOp::Add {
            path: "/imagePullSecrets",
            value: SaValue::PullSecrets(
                change
                    .pull_secrets
                    .iter()
                    .map(|n| PullSecretRef { name: n })
                    .collect(),
            ),
        },
    ];
    if !sa.has_annotations {
        ops.push(SaOp::Add {
            path: "/metadata/annotations",
            value: SaValue::Annotations(BTreeMap::from([(SA_OWNED_ANNOTATION, owned)])),
        });
    } else if change.owned.is_empty() {
        if !sa.owned.is_empty() {
            ops.push(SaOp::Remove { path: key });
        }
    } else {
        ops.push(SaOp::Add {
            path: key,
            value: SaValue::Text(owned),
        });
    }
    ops
}
