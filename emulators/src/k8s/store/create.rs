//! Create: the POST path of the store. Resolves the namespace and a generated name,
//! validates, stamps the fields the server owns, admits, and commits; a new namespace
//! also gets its `default` ServiceAccount, as the service-account controller would add.

use serde_json::{json, Value};

use super::{
    check_type_meta, meta_mut, meta_str, now_rfc3339, EventType, State, Store, WriteTarget,
};
use crate::k8s::admission::{Admit, Attributes, Operation};
use crate::k8s::kinds::KindSpec;
use crate::k8s::schema;
use crate::k8s::status::ApiError;
use crate::k8s::validate;

/// generateName suffix letters: the real server's, without vowels and look-alikes.
const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

// === impl Store ===

impl Store {
    pub(crate) fn create(
        &self,
        kind: usize,
        ns: Option<&str>,
        mut obj: Value,
        target: WriteTarget,
        admit: Option<&dyn Admit>,
    ) -> Result<Value, ApiError> {
        let spec = *self.kinds.get(kind);
        let mut st = self.lock();
        check_create_body(&spec, &obj)?;
        let ns = create_namespace(&spec, ns, &obj)?;
        let name = Self::create_name(&mut st, &obj);
        let mut causes = validate::name_causes(&spec, &name);
        causes.extend(validate::metadata_causes(&obj));
        if spec.namespaced {
            self.check_namespace_open(&st, &spec, &ns, &name)?;
        }
        causes.extend(validate::kind_causes(&spec, &ns, &mut obj)?);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&spec, &name, causes));
        }
        if let Some(sch) = self.kinds.schema(kind) {
            schema::prune(&mut obj, sch);
            schema::apply_defaults(&mut obj, sch);
            let causes = schema::validate(&obj, None, sch);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&spec, &name, causes));
            }
        }
        let uid = Self::new_uid(&mut st);
        stamp_created(&spec, &mut obj, target, (&ns, &name), uid)?;
        if let Some(admit) = admit {
            admit.admit(&Attributes {
                operation: Operation::Create,
                kind: &spec,
                subresource: target.subresource(),
                namespace: &ns,
                name: &name,
                object: Some(&obj),
                old_object: None,
            })?;
        }
        // Storage refuses an existing name last: validation and admission answer first.
        if st.objects[kind].contains_key(&(ns.clone(), name.clone())) {
            return Err(ApiError::already_exists(&spec, &name));
        }
        let created = self.commit(&mut st, kind, EventType::Added, None, obj);
        self.collect_if_orphan(&mut st, kind, &created);
        if is_core_namespace(&spec) && self.auto_default_service_account {
            self.create_default_service_account(&mut st, &name);
        }
        Ok((*created).clone())
    }

    /// The name to create under: `metadata.name`, or `generateName` plus a random suffix.
    fn create_name(st: &mut State, obj: &Value) -> String {
        let name = meta_str(obj, "name").to_string();
        if !name.is_empty() {
            return name;
        }
        let gen = meta_str(obj, "generateName").to_string();
        if gen.is_empty() {
            return name;
        }
        let r = Self::next_random(st);
        let alphabet = GENERATE_NAME_ALPHABET;
        let suffix: String = (0..5)
            .map(|i| alphabet[((r >> (i * 8)) % alphabet.len() as u64) as usize] as char)
            .collect();
        format!("{gen}{suffix}")
    }

    /// The namespace must exist and not be terminating (NamespaceLifecycle admission).
    fn check_namespace_open(
        &self,
        st: &State,
        spec: &KindSpec,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(nsk) = self.kinds.namespaces() else {
            return Ok(());
        };
        match st.objects[nsk].get(&(String::new(), ns.to_string())) {
            None => Err(ApiError::namespace_not_found(self.kinds.get(nsk), ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(
                    spec,
                    name,
                    &format!("unable to create new content in namespace {ns} because it is being terminated"),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// The service-account controller's work for a new namespace, done at once.
    fn create_default_service_account(&self, st: &mut State, ns: &str) {
        let Some(sa) = self.kinds.service_accounts() else {
            return;
        };
        let sa_obj = json!({
            "kind": "ServiceAccount",
            "apiVersion": "v1",
            "metadata": {
                "name": "default",
                "namespace": ns,
                "uid": Self::new_uid(st),
                "creationTimestamp": now_rfc3339(),
            }
        });
        self.commit(st, sa, EventType::Added, None, sa_obj);
    }
}

fn is_core_namespace(spec: &KindSpec) -> bool {
    spec.plural == "namespaces" && spec.group.is_empty()
}

/// A JSON object of the right type, with no resourceVersion set.
fn check_create_body(spec: &KindSpec, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    check_type_meta(spec, obj)?;
    // The storage layer refuses it (a copied object, most likely); an unparsable value
    // slips through, as on the real server.
    if meta_str(obj, "resourceVersion")
        .parse::<u64>()
        .is_ok_and(|rv| rv != 0)
    {
        return Err(ApiError::new(
            500,
            "",
            "resourceVersion should not be set on objects to be created",
        ));
    }
    Ok(())
}

/// The namespace from the URL or the body; they must agree when both are given.
fn create_namespace(spec: &KindSpec, ns: Option<&str>, obj: &Value) -> Result<String, ApiError> {
    if !spec.namespaced {
        return Ok(String::new());
    }
    let body_ns = meta_str(obj, "namespace");
    match ns {
        Some(n) if !body_ns.is_empty() && body_ns != n => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        Some(n) => Ok(n.to_string()),
        None if !body_ns.is_empty() => Ok(body_ns.to_string()),
        None => Err(ApiError::method_not_allowed("POST")),
    }
}

/// The fields the server owns on a new object: type, identity, timestamps, generation,
/// and a namespace's spec, status and name label.
fn stamp_created(
    spec: &KindSpec,
    obj: &mut Value,
    target: WriteTarget,
    (ns, name): (&str, &str),
    uid: String,
) -> Result<(), ApiError> {
    {
        let m = obj
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("object expected"))?;
        m.insert("kind".into(), json!(spec.kind));
        m.insert("apiVersion".into(), json!(spec.api_version()));
        if spec.has_status && target != WriteTarget::Direct && spec.custom {
            m.remove("status");
        }
        if is_core_namespace(spec) {
            m.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            m.insert("status".into(), json!({"phase": "Active"}));
        }
    }
    let meta = meta_mut(obj);
    meta.insert("name".into(), json!(name));
    if spec.namespaced {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    if spec.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if is_core_namespace(spec) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Value::Object(l) = labels {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    Ok(())
}
