//! Owner-reference garbage collection, the controller-manager's part the operator relies
//! on: a dependent whose every owner is gone (absent, or present with another uid) is
//! deleted in the background, finalizers respected, cascading to its own dependents. Done
//! synchronously inside the write that caused it.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{has_finalizers, meta_mut, meta_str, now_rfc3339, EventType, State, Store};

// === impl Store ===

impl Store {
    /// Whether an owner reference points at a live object: None when its kind is not served
    /// (the real collector then leaves the dependent alone).
    fn owner_alive(&self, st: &State, dependent_ns: &str, oref: &Value) -> Option<bool> {
        let api_version = oref.get("apiVersion").and_then(Value::as_str)?;
        let kind_name = oref.get("kind").and_then(Value::as_str)?;
        let name = oref.get("name").and_then(Value::as_str)?;
        let uid = oref.get("uid").and_then(Value::as_str)?;
        let (k, spec) = self
            .kinds
            .iter()
            .find(|(_, s)| s.kind == kind_name && s.api_version() == api_version)?;
        let ns = if spec.namespaced { dependent_ns } else { "" };
        Some(
            st.objects[k]
                .get(&(ns.to_string(), name.to_string()))
                .is_some_and(|o| meta_str(o, "uid") == uid),
        )
    }

    /// Dependent whose every owner is known to be gone (absent, or present with another uid).
    fn is_orphan(&self, st: &State, obj: &Value) -> bool {
        let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            return false;
        };
        let ns = meta_str(obj, "namespace");
        !refs.is_empty()
            && refs
                .iter()
                .all(|r| self.owner_alive(st, ns, r) == Some(false))
    }

    pub(super) fn collect_if_orphan(&self, st: &mut State, kind: usize, obj: &Arc<Value>) {
        if self.garbage_collection && self.is_orphan(st, obj) {
            self.collect(st, kind, obj.clone());
        }
    }

    /// Background deletion of one dependent: finalizers respected, then its own dependents.
    fn collect(&self, st: &mut State, kind: usize, obj: Arc<Value>) {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        if has_finalizers(&obj) {
            let mut new = (*obj).clone();
            meta_mut(&mut new).insert("deletionTimestamp".into(), json!(now_rfc3339()));
            self.commit(st, kind, EventType::Modified, Some(obj), new);
            return;
        }
        let gone = self.commit(
            st,
            kind,
            EventType::Deleted,
            Some(obj.clone()),
            (*obj).clone(),
        );
        self.cascade(st, &gone);
    }

    /// After `gone` was removed, collect every dependent left without a live owner.
    pub(super) fn cascade(&self, st: &mut State, gone: &Value) {
        if !self.garbage_collection {
            return;
        }
        let uid = meta_str(gone, "uid").to_string();
        if uid.is_empty() {
            return;
        }
        let mut dependents = Vec::new();
        for (k, objs) in st.objects.iter().enumerate() {
            for o in objs.values() {
                let owned = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(&uid))
                    });
                if owned {
                    dependents.push((k, o.clone()));
                }
            }
        }
        for (k, o) in dependents {
            if self.is_orphan(st, &o) {
                self.collect(st, k, o);
            }
        }
    }
}
