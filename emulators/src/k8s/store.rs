//! The object store: every object as `serde_json::Value`, one global resourceVersion counter,
//! a bounded history of events (the watch cache), and the write semantics of the real
//! server (preconditions, status subresource, generation, finalizers, no-op writes).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;

use super::admission::{Admit, Attributes, Operation};
use super::kinds::{KindSpec, KindTable};
use super::patch;
use super::schema;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, FieldCause};
use super::validate;

mod gc;

/// Broadcast capacity: a watcher this far behind is cut off (410) like a slow watcher on
/// the real server.
const WATCH_CHANNEL_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change, kept in the history window and broadcast to watchers. `old` lets a
/// selector watch turn a MODIFIED into ADDED or DELETED as the object enters or leaves it.
#[derive(Debug)]
pub struct StoredEvent {
    pub rv: u64,
    /// When the write was committed: watch lag counts from here.
    pub committed: tokio::time::Instant,
    pub kind: usize,
    pub namespace: String,
    pub etype: EventType,
    pub old: Option<Arc<Value>>,
    pub object: Arc<Value>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTarget {
    Main,
    Status,
    /// In-process setup: every field as given, status included.
    Direct,
}

// === impl WriteTarget ===

impl WriteTarget {
    /// The subresource admission sees: "status" for status writes.
    pub fn subresource(self) -> &'static str {
        match self {
            WriteTarget::Status => "status",
            _ => "",
        }
    }
}

/// The patch formats, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// Result of a DELETE: gone now, or kept with a deletionTimestamp until finalizers clear.
#[derive(Debug, Clone)]
pub enum Deleted {
    Gone(Value),
    Pending(Value),
}

type Key = (String, String);

struct State {
    objects: Vec<BTreeMap<Key, Arc<Value>>>,
    rv: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_size: usize,
    /// Events with rv <= compacted are no longer in the history.
    compacted: u64,
    rng: u64,
}

/// The in-memory API state shared by the HTTP server and the in-process handle.
pub struct Store {
    kinds: KindTable,
    state: Mutex<State>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    auto_default_service_account: bool,
    /// Act as the controller-manager's garbage collector for ownerReferences.
    garbage_collection: bool,
}

/// What a watch starts from: events to send first, then the live receiver.
pub struct WatchStart {
    pub initial: Vec<Arc<StoredEvent>>,
    pub live: broadcast::Receiver<Arc<StoredEvent>>,
    pub current_rv: u64,
}

/// List query parameters.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(m) = obj else {
        unreachable!("made an object above")
    };
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(meta) => meta,
        _ => unreachable!("made an object above"),
    }
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Everything but metadata and status: a change here bumps generation.
fn spec_part(obj: &Value, kind: &KindSpec) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        if kind.has_status {
            m.remove("status");
        }
    }
    v
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

// === impl Store ===

impl Store {
    pub fn new(
        kinds: KindTable,
        history_size: usize,
        auto_default_service_account: bool,
        garbage_collection: bool,
    ) -> Self {
        let (events, _) = broadcast::channel(WATCH_CHANNEL_CAPACITY);
        let seed = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 | 1;
        Store {
            state: Mutex::new(State {
                objects: (0..kinds.len()).map(|_| BTreeMap::new()).collect(),
                rv: 1,
                history: VecDeque::new(),
                history_size: history_size.max(1),
                compacted: 1,
                rng: seed,
            }),
            kinds,
            events,
            auto_default_service_account,
            garbage_collection,
        }
    }

    pub fn kinds(&self) -> &KindTable {
        &self.kinds
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Forget all history: any resourceVersion before now is too old for a watch.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    pub fn set_history_size(&self, size: usize) {
        let mut st = self.lock();
        st.history_size = size.max(1);
        trim_history(&mut st);
    }

    fn key(&self, kind: usize, ns: Option<&str>, name: &str) -> Key {
        let ns = if self.kinds.get(kind).namespaced {
            ns.unwrap_or("")
        } else {
            ""
        };
        (ns.to_string(), name.to_string())
    }

    fn commit(
        &self,
        st: &mut State,
        kind: usize,
        etype: EventType,
        old: Option<Arc<Value>>,
        mut obj: Value,
    ) -> Arc<Value> {
        st.rv += 1;
        let rv = st.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let ns = meta_str(&obj, "namespace").to_string();
        let key = (ns.clone(), meta_str(&obj, "name").to_string());
        let obj = Arc::new(obj);
        match etype {
            EventType::Deleted => {
                st.objects[kind].remove(&key);
            }
            _ => {
                st.objects[kind].insert(key, obj.clone());
            }
        }
        let ev = Arc::new(StoredEvent {
            rv,
            committed: tokio::time::Instant::now(),
            kind,
            namespace: ns,
            etype,
            old,
            object: obj.clone(),
        });
        st.history.push_back(ev.clone());
        trim_history(st);
        // No receivers is fine: nobody watches.
        let _ = self.events.send(ev);
        obj
    }

    fn next_random(st: &mut State) -> u64 {
        // splitmix64: uids and generateName suffixes only need to be unique, not secret.
        st.rng = st.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = st.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn new_uid(st: &mut State) -> String {
        let a = Self::next_random(st);
        let b = Self::next_random(st);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    // --- reads ---

    pub fn get(&self, kind: usize, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = self.key(kind, ns, name);
        let st = self.lock();
        st.objects[kind]
            .get(&key)
            .map(|o| (**o).clone())
            .ok_or_else(|| ApiError::not_found(self.kinds.get(kind), name))
    }

    pub fn list(&self, kind: usize, ns: Option<&str>, q: &ListQuery) -> Result<Value, ApiError> {
        let spec = *self.kinds.get(kind);
        let st = self.lock();
        let (list_rv, start) = match &q.continue_token {
            Some(tok) => {
                let (rv, start) = decode_continue(tok)?;
                if rv < st.compacted {
                    return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."));
                }
                (rv, Some(start))
            }
            None => (st.rv, None),
        };
        let ns = if spec.namespaced { ns } else { None };
        let mut items = Vec::new();
        let mut next: Option<()> = None;
        // Matching objects after the page: ListMeta.remainingItemCount.
        let mut remaining: u64 = 0;
        let limit = q.limit.filter(|l| *l > 0);
        let snapshot = snapshot_at(&st, kind, list_rv);
        for (key, obj) in snapshot.iter() {
            if ns.is_some_and(|n| key.0 != n) {
                continue;
            }
            if let Some(s) = &start {
                if key <= s {
                    continue;
                }
            }
            if !q.labels.matches(obj) || !q.fields.matches(obj) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                next = Some(());
                remaining += 1;
                continue;
            }
            items.push(list_item(&spec, obj));
        }
        let mut meta = Map::new();
        meta.insert("resourceVersion".into(), Value::String(list_rv.to_string()));
        if next.is_some() {
            if let Some(last) = items.last() {
                let start = (
                    meta_str(last, "namespace").to_string(),
                    meta_str(last, "name").to_string(),
                );
                meta.insert(
                    "continue".into(),
                    Value::String(encode_continue(list_rv, &start)),
                );
            }
            // Like etcd-backed lists: only known when no selector filters the rest.
            if q.labels.is_empty() && q.fields.is_empty() {
                meta.insert("remainingItemCount".into(), json!(remaining));
            }
        }
        Ok(json!({
            "kind": format!("{}List", spec.kind),
            "apiVersion": spec.api_version(),
            "metadata": Value::Object(meta),
            "items": items,
        }))
    }

    /// Snapshot for a watch: replayed history after `rv`, or the current state as ADDED when
    /// `rv` is "" or "0"; errors with 410 when `rv` is older than the history window.
    pub fn watch(&self, kind: usize, ns: Option<&str>, rv: &str) -> Result<WatchStart, ApiError> {
        let spec = *self.kinds.get(kind);
        let st = self.lock();
        let live = self.events.subscribe();
        let initial = if rv.is_empty() || rv == "0" {
            st.objects[kind]
                .iter()
                .filter(|(k, _)| !spec.namespaced || ns.is_none_or(|n| k.0 == n))
                .map(|(k, o)| {
                    Arc::new(StoredEvent {
                        rv: st.rv,
                        committed: tokio::time::Instant::now(),
                        kind,
                        namespace: k.0.clone(),
                        etype: EventType::Added,
                        old: None,
                        object: o.clone(),
                    })
                })
                .collect()
        } else {
            let from: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if from < st.compacted {
                return Err(ApiError::too_old_resource_version(from, st.compacted));
            }
            st.history
                .iter()
                .filter(|e| e.rv > from && e.kind == kind)
                .cloned()
                .collect()
        };
        Ok(WatchStart {
            initial,
            live,
            current_rv: st.rv,
        })
    }

    // --- writes ---

    pub fn create(
        &self,
        kind: usize,
        ns: Option<&str>,
        mut obj: Value,
        target: WriteTarget,
        admit: Option<&dyn Admit>,
    ) -> Result<Value, ApiError> {
        let spec = *self.kinds.get(kind);
        let mut st = self.lock();
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type_meta(&spec, &obj)?;
        // The storage layer refuses it (a copied object, most likely); an unparsable value
        // slips through, as on the real server.
        if meta_str(&obj, "resourceVersion")
            .parse::<u64>()
            .is_ok_and(|rv| rv != 0)
        {
            return Err(ApiError::new(
                500,
                "",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let ns = if spec.namespaced {
            let body_ns = meta_str(&obj, "namespace");
            match ns {
                Some(n) if !body_ns.is_empty() && body_ns != n => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                Some(n) => n.to_string(),
                None if !body_ns.is_empty() => body_ns.to_string(),
                None => return Err(ApiError::method_not_allowed("POST")),
            }
        } else {
            String::new()
        };
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let gen = meta_str(&obj, "generateName").to_string();
            if !gen.is_empty() {
                const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                let r = Self::next_random(&mut st);
                let suffix: String = (0..5)
                    .map(|i| ALPHABET[((r >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
                    .collect();
                name = format!("{gen}{suffix}");
            }
        }
        let mut causes = validate::name_causes(&spec, &name);
        causes.extend(validate::metadata_causes(&obj));
        if spec.namespaced {
            if let Some(nsk) = self.kinds.namespaces() {
                match st.objects[nsk].get(&(String::new(), ns.clone())) {
                    None => return Err(ApiError::namespace_not_found(self.kinds.get(nsk), &ns)),
                    // NamespaceLifecycle admission.
                    Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                        return Err(ApiError::forbidden(
                            &spec,
                            &name,
                            &format!("unable to create new content in namespace {ns} because it is being terminated"),
                        ))
                    }
                    Some(_) => {}
                }
            }
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
        {
            let m = obj
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("object expected"))?;
            m.insert("kind".into(), json!(spec.kind));
            m.insert("apiVersion".into(), json!(spec.api_version()));
            if spec.has_status && target != WriteTarget::Direct && spec.custom {
                m.remove("status");
            }
            if spec.plural == "namespaces" && spec.group.is_empty() {
                m.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
                m.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        let meta = meta_mut(&mut obj);
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
        if spec.plural == "namespaces" && spec.group.is_empty() {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
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
        if spec.plural == "namespaces" && spec.group.is_empty() && self.auto_default_service_account
        {
            if let Some(sa) = self.kinds.service_accounts() {
                let sa_obj = json!({
                    "kind": "ServiceAccount",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": "default",
                        "namespace": name,
                        "uid": Self::new_uid(&mut st),
                        "creationTimestamp": now_rfc3339(),
                    }
                });
                self.commit(&mut st, sa, EventType::Added, None, sa_obj);
            }
        }
        Ok((*created).clone())
    }

    /// PUT: whole-object replace with optimistic concurrency.
    pub fn replace(
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
        let key = self.key(kind, ns, name);
        let mut st = self.lock();
        let old = st.objects[kind]
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&spec, name))?;
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
    pub fn patch(
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
        let key = self.key(kind, ns, name);
        let mut st = self.lock();
        let old = st.objects[kind]
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&spec, name))?;
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
        // Fields the server owns.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            if old_meta.get("deletionTimestamp").is_some() {
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
            }
        }
        let mut causes: Vec<FieldCause> = validate::metadata_causes(&new);
        if let Some(sch) = self.kinds.schema(kind) {
            schema::prune(&mut new, sch);
            schema::apply_defaults(&mut new, sch);
            causes.extend(schema::validate(&new, Some(&old), sch));
        }
        let ns = meta_str(&old, "namespace").to_string();
        causes.extend(validate::kind_causes(&spec, &ns, &mut new)?);
        if spec.plural == "secrets" && spec.group.is_empty() {
            causes.extend(validate::secret_update_causes(&old, &new));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&spec, &name, causes));
        }
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

    /// DELETE: immediate without finalizers, otherwise a deletionTimestamp and a MODIFIED.
    /// Deleting a namespace deletes everything in it. Preconditions that do not hold
    /// answer 409 Conflict, as the real server does.
    pub fn delete(
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
        let old = st.objects[kind]
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&spec, name))?;
        for (field, want) in [
            ("uid", &preconditions.uid),
            ("resourceVersion", &preconditions.resource_version),
        ] {
            if let Some(want) = want.as_deref().filter(|w| !w.is_empty()) {
                if want != meta_str(&old, field) {
                    let have = meta_str(&old, field);
                    return Err(ApiError::precondition_failed(
                        &spec, name, field, want, have,
                    ));
                }
            }
        }
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
            // The namespace controller's work, done at once: Terminating, content deleted,
            // then the namespace itself unless a finalizer still holds it.
            let mut terminating = (*old).clone();
            meta_mut(&mut terminating).insert("deletionTimestamp".into(), json!(now_rfc3339()));
            set_field(
                &mut terminating,
                "status",
                Some(json!({"phase": "Terminating"})),
            );
            let t = self.commit(&mut st, kind, EventType::Modified, Some(old), terminating);
            self.delete_namespace_content(&mut st, name);
            if has_finalizers(&t) {
                return Ok(Deleted::Pending((*t).clone()));
            }
            let gone = self.commit(
                &mut st,
                kind,
                EventType::Deleted,
                Some(t.clone()),
                (*t).clone(),
            );
            self.cascade(&mut st, &gone);
            return Ok(Deleted::Gone((*gone).clone()));
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

    /// In-process create-or-replace for test setup: no preconditions, status as given.
    pub fn apply(&self, kind: usize, obj: Value) -> Result<Value, ApiError> {
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

    /// Live events, for in-process waiting. Subscribed under the lock together with a
    /// snapshot of the current rv, so nothing falls between the two.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<Arc<StoredEvent>>) {
        let st = self.lock();
        (st.rv, self.events.subscribe())
    }

    /// Committed changes after `rv` still in the history window (oldest first), or None
    /// when `rv` is older than the window.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Arc<StoredEvent>>> {
        let st = self.lock();
        if rv < st.compacted {
            return None;
        }
        Some(st.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Every object of a kind, optionally in one namespace, in key order.
    pub fn objects(&self, kind: usize, ns: Option<&str>) -> Vec<Value> {
        let st = self.lock();
        st.objects[kind]
            .iter()
            .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
            .map(|(_, o)| (**o).clone())
            .collect()
    }
}

/// The kind's objects as they were at `rv`: the current state with every change after `rv`
/// (still in the history window) undone. Continue tokens page through this snapshot, as the
/// real server pages through etcd at the first page's revision.
fn snapshot_at(
    st: &State,
    kind: usize,
    rv: u64,
) -> std::borrow::Cow<'_, BTreeMap<Key, Arc<Value>>> {
    if rv >= st.rv {
        // The usual case (a first page): no copy.
        return std::borrow::Cow::Borrowed(&st.objects[kind]);
    }
    let mut objects = st.objects[kind].clone();
    let mut undone: std::collections::BTreeSet<Key> = std::collections::BTreeSet::new();
    for ev in st.history.iter().filter(|e| e.kind == kind && e.rv > rv) {
        let key = (
            ev.namespace.clone(),
            meta_str(&ev.object, "name").to_string(),
        );
        // The earliest change after rv holds the state at rv in its `old`.
        if undone.insert(key.clone()) {
            match &ev.old {
                Some(old) if ev.etype != EventType::Added => {
                    objects.insert(key, old.clone());
                }
                _ => {
                    objects.remove(&key);
                }
            }
        }
    }
    std::borrow::Cow::Owned(objects)
}

fn trim_history(st: &mut State) {
    while st.history.len() > st.history_size {
        if let Some(ev) = st.history.pop_front() {
            st.compacted = ev.rv;
        }
    }
}

fn set_field(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Value::Object(m) = obj {
        match value {
            Some(v) => m.insert(field.into(), v),
            None => m.remove(field),
        };
    }
}

fn check_type_meta(spec: &KindSpec, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != spec.kind)
        || (!api_version.is_empty() && api_version != spec.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            spec.api_version()
        )));
    }
    Ok(())
}

/// Built-in kinds' list items carry no kind/apiVersion on the wire; custom resources' do.
fn list_item(spec: &KindSpec, obj: &Value) -> Value {
    let mut v = obj.clone();
    if !spec.custom {
        if let Value::Object(m) = &mut v {
            m.remove("kind");
            m.remove("apiVersion");
        }
    }
    v
}

fn encode_continue(rv: u64, start: &Key) -> String {
    let start = if start.0.is_empty() {
        format!("{}\u{0}", start.1)
    } else {
        format!("{}/{}\u{0}", start.0, start.1)
    };
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_continue(tok: &str) -> Result<(u64, Key), ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    // Like the real server's (RawURLEncoding); padded tokens are accepted too.
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    let key = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Ok((rv, key))
}
