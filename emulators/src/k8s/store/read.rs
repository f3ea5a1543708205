//! The read side of the store: get, paginated list over a consistent snapshot, and the
//! start of a watch. Kept apart from the writes because pagination (continue tokens,
//! snapshots at an older revision) is its own concern and none of it mutates state.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::{meta_str, EventType, Key, ListQuery, State, Store, StoredEvent, WatchStart};
use crate::k8s::kinds::KindSpec;
use crate::k8s::status::ApiError;

// === impl Store ===

impl Store {
    pub(crate) fn get(&self, kind: usize, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = self.key(kind, ns, name);
        let st = self.lock();
        st.objects[kind]
            .get(&key)
            .map(|o| (**o).clone())
            .ok_or_else(|| ApiError::not_found(self.kinds.get(kind), name))
    }

    pub(crate) fn list(
        &self,
        kind: usize,
        ns: Option<&str>,
        q: &ListQuery,
    ) -> Result<Value, ApiError> {
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
    pub(crate) fn watch(
        &self,
        kind: usize,
        ns: Option<&str>,
        rv: &str,
    ) -> Result<WatchStart, ApiError> {
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
}

/// The kind's objects as they were at `rv`: the current state with every change after `rv`
/// (still in the history window) undone. Continue tokens page through this snapshot, as the
/// real server pages through etcd at the first page's revision.
fn snapshot_at(st: &State, kind: usize, rv: u64) -> Cow<'_, BTreeMap<Key, Arc<Value>>> {
    if rv >= st.rv {
        // The usual case (a first page): no copy.
        return Cow::Borrowed(&st.objects[kind]);
    }
    let mut objects = st.objects[kind].clone();
    let mut undone: BTreeSet<Key> = BTreeSet::new();
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
    Cow::Owned(objects)
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
