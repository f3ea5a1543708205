//! Update: PUT (replace), PATCH in its four formats, and the in-process apply, all ending
//! in one locked update that keeps the server-owned fields, validates, bumps generation,
//! admits, and skips writes that change nothing.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    check_type_meta, has_finalizers, meta_mut, meta_str, set_field, spec_part, EventType,
    PatchType, State, Store, WriteTarget,
};
use crate::k8s::admission::{Admit, Attributes, Operation};
use crate::k8s::kinds::KindSpec;
use crate::k8s::patch;
use crate::k8s::schema;
use crate::k8s::status::{ApiError, FieldCause};
use crate::k8s::validate;

/// Metadata only the server writes: an update keeps the stored values.
const SERVER_OWNED_METADATA: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "namespace",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];

// === impl Store ===

impl Store {
    /// PUT: whole-object replace with optimistic concurrency.
    pub(crate) fn replace(
        &self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        target: WriteTarget,
        admit: Option<&dyn Admit>,
    ) -> Result<Value, ApiError> {
        let spec = *self.kinds.get(kind);
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type_meta(&spec, &obj)?;
        let body_name = meta_str(&obj, "name");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&obj, "namespace");
        if spec.namespaced && !body_ns.is_empty() && Some(body_ns) != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut st = self.lock();
        let old = self.existing(&st, kind, ns, name)?;
        let want_rv = meta_str(&obj, "resourceVersion");
        if want_rv.is_empty() && spec.custom && target != WriteTarget::Direct {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::resource_version_required(&spec, name));
        }
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&spec, name));
        }
        self.update_locked(&mut st, kind, old, obj, target, admit)
    }

    /// PATCH in any supported format; a resourceVersion in the patched result is a
    /// precondition, as on the real server.
    pub(crate) fn patch(
        &self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        (ptype, body): (PatchType, &Value),
        target: WriteTarget,
        admit: Option<&dyn Admit>,
    ) -> Result<Value, ApiError> {
        let spec = *self.kinds.get(kind);
        if spec.custom && ptype == PatchType::Strategic {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
            ));
        }
        let mut st = self.lock();
        let old = self.existing(&st, kind, ns, name)?;
        let mut new = (*old).clone();
        match ptype {
            PatchType::Merge | PatchType::Apply => patch::merge_patch(&mut new, body),
            PatchType::Json => patch::json_patch(&mut new, body)?,
            PatchType::Strategic => patch::strategic_merge_patch(&mut new, body, spec.merge_lists)?,
        }
        if meta_str(&new, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&spec, name));
        }
        if meta_str(&new, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&new, "name")
            )));
        }
        self.update_locked(&mut st, kind, old, new, target, admit)
    }

    /// In-process create-or-replace for test setup: no preconditions, status as given.
    pub(crate) fn apply(&self, kind: usize, obj: Value) -> Result<Value, ApiError> {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = meta_str(&obj, "name").to_string();
        let mut obj = obj;
        meta_mut(&mut obj).remove("resourceVersion");
        match self.get(kind, ns.as_deref(), &name) {
            Ok(_) => self.replace(kind, ns.as_deref(), &name, obj, WriteTarget::Direct, None),
            Err(_) => self.create(kind, ns.as_deref(), obj, WriteTarget::Direct, None),
        }
    }

    fn update_locked(
        &self,
        st: &mut State,
        kind: usize,
        old: Arc<Value>,
        mut new: Value,
        target: WriteTarget,
        admit: Option<&dyn Admit>,
    ) -> Result<Value, ApiError> {
        let spec = *self.kinds.get(kind);
        let name = meta_str(&old, "name").to_string();
        if spec.has_status {
            match target {
                WriteTarget::Main => set_field(&mut new, "status", old.get("status").cloned()),
                WriteTarget::Status => {
                    let status = new.get("status").cloned();
                    new = (*old).clone();
                    set_field(&mut new, "status", status);
                }
                WriteTarget::Direct => {}
            }
        }
        if let Value::Object(m) = &mut new {
            m.insert("kind".into(), json!(spec.kind));
            m.insert("apiVersion".into(), json!(spec.api_version()));
        }
        keep_server_owned(&spec, &name, &old, &mut new)?;
        let ns = meta_str(&old, "namespace").to_string();
        self.validate_update(kind, &spec, (&ns, &name), &old, &mut new)?;
        if spec.tracks_generation && spec_part(&old, &spec) != spec_part(&new, &spec) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if let Some(admit) = admit {
            // Before the no-op check: the real server admits writes that change nothing too.
            admit.admit(&Attributes {
                operation: Operation::Update,
                kind: &spec,
                subresource: target.subresource(),
                namespace: &ns,
                name: &name,
                object: Some(&new),
                old_object: Some(&old),
            })?;
        }
        let being_deleted = old.pointer("/metadata/deletionTimestamp").is_some();
        if being_deleted && !has_finalizers(&new) {
            let gone = self.commit(st, kind, EventType::Deleted, Some(old), new);
            self.cascade(st, &gone);
            return Ok((*gone).clone());
        }
        if new == *old {
            // The real server skips writes that change nothing: no new resourceVersion, no event.
            return Ok((*old).clone());
        }
        let updated = self.commit(st, kind, EventType::Modified, Some(old), new);
        self.collect_if_orphan(st, kind, &updated);
        Ok((*updated).clone())
    }

    /// Metadata, schema (pruned and defaulted first) and kind rules, all causes in one 422.
    fn validate_update(
        &self,
        kind: usize,
        spec: &KindSpec,
        (ns, name): (&str, &str),
        old: &Value,
        new: &mut Value,
    ) -> Result<(), ApiError> {
        let mut causes: Vec<FieldCause> = validate::metadata_causes(new);
        if let Some(sch) = self.kinds.schema(kind) {
            schema::prune(new, sch);
            schema::apply_defaults(new, sch);
            causes.extend(schema::validate(new, Some(old), sch));
        }
        causes.extend(validate::kind_causes(spec, ns, new)?);
        if spec.plural == "secrets" && spec.group.is_empty() {
            causes.extend(validate::secret_update_causes(old, new));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(spec, name, causes));
        }
        Ok(())
    }
}

/// Copies the server-owned metadata from `old` into `new`, and refuses a new finalizer on
/// an object being deleted.
fn keep_server_owned(
    spec: &KindSpec,
    name: &str,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    let old_meta = old.get("metadata").cloned().unwrap_or_default();
    let m = meta_mut(new);
    for f in SERVER_OWNED_METADATA {
        match old_meta.get(f) {
            Some(v) => m.insert(f.into(), v.clone()),
            None => m.remove(f),
        };
    }
    if old_meta.get("deletionTimestamp").is_none() {
        return Ok(());
    }
    // Finalizers may be removed from an object being deleted, not added.
    if let (Some(Value::Array(old_f)), Some(Value::Array(new_f))) =
        (old_meta.get("finalizers"), m.get("finalizers"))
    {
        if new_f.iter().any(|f| !old_f.contains(f)) {
            return Err(ApiError::new(422, "Invalid", format!(
                "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                spec.kind
            )));
        }
    }
    Ok(())
}
