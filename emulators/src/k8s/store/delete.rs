//! Delete: preconditions, finalizers (a deletionTimestamp instead of removal), the
//! namespace controller's cascade, and the immortal namespaces.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    has_finalizers, meta_mut, meta_str, now_rfc3339, set_field, Deleted, EventType, Key,
    Preconditions, State, Store,
};
use crate::k8s::admission::{Admit, Attributes, Operation};
use crate::k8s::kinds::KindSpec;
use crate::k8s::status::ApiError;

// === impl Store ===

impl Store {
    /// DELETE: immediate without finalizers, otherwise a deletionTimestamp and a MODIFIED.
    /// Deleting a namespace deletes everything in it. Preconditions that do not hold
    /// answer 409 Conflict, as the real server does.
    pub(crate) fn delete(
        &self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        preconditions: &Preconditions,
        admit: Option<&dyn Admit>,
    ) -> Result<Deleted, ApiError> {
        let spec = *self.kinds.get(kind);
        let key = self.key(kind, ns, name);
        let mut st = self.lock();
        let old = self.existing(&st, kind, ns, name)?;
        check_preconditions(&spec, name, &old, preconditions)?;
        if let Some(admit) = admit {
            admit.admit(&Attributes {
                operation: Operation::Delete,
                kind: &spec,
                subresource: "",
                namespace: &key.0,
                name,
                object: None,
                old_object: Some(&old),
            })?;
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Deleted::Pending((*old).clone()));
        }
        let is_namespace = spec.plural == "namespaces" && spec.group.is_empty();
        if is_namespace && matches!(name, "default" | "kube-system" | "kube-public") {
            // NamespaceLifecycle admission keeps the immortal namespaces.
            return Err(ApiError::forbidden(
                &spec,
                name,
                "this namespace may not be deleted",
            ));
        }
        if is_namespace {
            return Ok(self.delete_namespace(&mut st, kind, name, old));
        }
        if has_finalizers(&old) {
            let mut new = (*old).clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            let kept = self.commit(&mut st, kind, EventType::Modified, Some(old), new);
            return Ok(Deleted::Pending((*kept).clone()));
        }
        let gone = self.commit(
            &mut st,
            kind,
            EventType::Deleted,
            Some(old.clone()),
            (*old).clone(),
        );
        self.cascade(&mut st, &gone);
        Ok(Deleted::Gone((*gone).clone()))
    }

    /// The namespace controller's work, done at once: Terminating, content deleted, then
    /// the namespace itself unless a finalizer still holds it.
    fn delete_namespace(
        &self,
        st: &mut State,
        kind: usize,
        name: &str,
        old: Arc<Value>,
    ) -> Deleted {
        let mut terminating = (*old).clone();
        meta_mut(&mut terminating).insert("deletionTimestamp".into(), json!(now_rfc3339()));
        set_field(
            &mut terminating,
            "status",
            Some(json!({"phase": "Terminating"})),
        );
        let t = self.commit(st, kind, EventType::Modified, Some(old), terminating);
        self.delete_namespace_content(st, name);
        if has_finalizers(&t) {
            return Deleted::Pending((*t).clone());
        }
        let gone = self.commit(st, kind, EventType::Deleted, Some(t.clone()), (*t).clone());
        self.cascade(st, &gone);
        Deleted::Gone((*gone).clone())
    }

    fn delete_namespace_content(&self, st: &mut State, ns: &str) {
        for (k, spec_k) in self.kinds.iter() {
            if !spec_k.namespaced {
                continue;
            }
            let keys: Vec<Key> = st.objects[k]
                .keys()
                .filter(|key| key.0 == ns)
                .cloned()
                .collect();
            for key in keys {
                if let Some(o) = st.objects[k].get(&key).cloned() {
                    let gone =
                        self.commit(st, k, EventType::Deleted, Some(o.clone()), (*o).clone());
                    self.cascade(st, &gone);
                }
            }
        }
    }
}

/// `DeleteOptions.preconditions`: each one given must match the stored object.
fn check_preconditions(
    spec: &KindSpec,
    name: &str,
    old: &Value,
    preconditions: &Preconditions,
) -> Result<(), ApiError> {
    for (field, want) in [
        ("uid", &preconditions.uid),
        ("resourceVersion", &preconditions.resource_version),
    ] {
        if let Some(want) = want.as_deref().filter(|w| !w.is_empty()) {
            if want != meta_str(old, field) {
                let have = meta_str(old, field);
                return Err(ApiError::precondition_failed(spec, name, field, want, have));
            }
        }
    }
    Ok(())
}
