//! The object store: every object as `serde_json::Value`, one global resourceVersion counter,
//! a bounded history of events (the watch cache), and the write semantics of the real
//! server (preconditions, status subresource, generation, finalizers, no-op writes).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;

use super::kinds::{KindSpec, KindTable};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;

mod create;
mod delete;
mod gc;
mod read;
mod update;

/// Broadcast capacity: a watcher this far behind is cut off (410) like a slow watcher on
/// the real server.
const WATCH_CHANNEL_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) struct StoredEvent {
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
pub(crate) enum WriteTarget {
    Main,
    Status,
    /// In-process setup: every field as given, status included.
    Direct,
}

// === impl WriteTarget ===

impl WriteTarget {
    /// The subresource admission sees: "status" for status writes.
    pub(crate) fn subresource(self) -> &'static str {
        match self {
            WriteTarget::Status => "status",
            _ => "",
        }
    }
}

/// The patch formats, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// Result of a DELETE: gone now, or kept with a deletionTimestamp until finalizers clear.
#[derive(Debug, Clone)]
pub(crate) enum Deleted {
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
pub(crate) struct Store {
    kinds: KindTable,
    state: Mutex<State>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    auto_default_service_account: bool,
    /// Act as the controller-manager's garbage collector for ownerReferences.
    garbage_collection: bool,
}

/// What a watch starts from: events to send first, then the live receiver.
pub(crate) struct WatchStart {
    pub initial: Vec<Arc<StoredEvent>>,
    pub live: broadcast::Receiver<Arc<StoredEvent>>,
    pub current_rv: u64,
}

/// List query parameters.
#[derive(Debug, Default, Clone)]
pub(crate) struct ListQuery {
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
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

// === impl Store ===

impl Store {
    pub(crate) fn new(
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

    pub(crate) fn kinds(&self) -> &KindTable {
        &self.kinds
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Forget all history: any resourceVersion before now is too old for a watch.
    pub(crate) fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    pub(crate) fn set_history_size(&self, size: usize) {
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

    /// The stored object under the key, or 404.
    fn existing(
        &self,
        st: &State,
        kind: usize,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        st.objects[kind]
            .get(&self.key(kind, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(self.kinds.get(kind), name))
    }

    /// Live events, for in-process waiting. Subscribed under the lock together with a
    /// snapshot of the current rv, so nothing falls between the two.
    pub(crate) fn subscribe(&self) -> (u64, broadcast::Receiver<Arc<StoredEvent>>) {
        let st = self.lock();
        (st.rv, self.events.subscribe())
    }

    /// Committed changes after `rv` still in the history window (oldest first), or None
    /// when `rv` is older than the window.
    pub(crate) fn changes_since(&self, rv: u64) -> Option<Vec<Arc<StoredEvent>>> {
        let st = self.lock();
        if rv < st.compacted {
            return None;
        }
        Some(st.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Every object of a kind, optionally in one namespace, in key order.
    pub(crate) fn objects(&self, kind: usize, ns: Option<&str>) -> Vec<Value> {
        let st = self.lock();
        st.objects[kind]
            .iter()
            .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
            .map(|(_, o)| (**o).clone())
            .collect()
    }
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
