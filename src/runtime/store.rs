//! A cache of watched objects, keyed by (namespace, name), filled by the reflector.
//!
//! The store keeps a projection `P` of each object rather than the object itself: the
//! watcher's caller chooses the few fields it needs (a Secret's name and a hash instead
//! of its data, say), which is where most of an operator's memory goes.
//!
//! Readers clone the handle freely; only the reflector writes. Values are `Arc`ed so a
//! snapshot costs a pointer copy per object, and no lock is held across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::k8s::types::ObjectMeta;

/// Identifies an object within one kind: namespace (`None` when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `None` for cluster-scoped kinds (Namespaces, the operator's CRs).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

// === impl ObjectKey ===

impl ObjectKey {
    /// The key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: None,
            name: name.into(),
        }
    }

    /// The key of a namespaced object.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// The key of an object, or `None` when the server sent it without a name (which
    /// a well-formed answer never does; such objects are skipped, not cached).
    pub(crate) fn of(meta: &ObjectMeta) -> Option<ObjectKey> {
        let name = meta.name.clone()?;
        Some(ObjectKey {
            namespace: meta.namespace.clone(),
            name,
        })
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One change to apply to a store.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change<P> {
    /// The object exists with this projection (created or modified).
    Applied(ObjectKey, P),
    /// The object is gone, or no longer of interest (its projection became `None`).
    Deleted(ObjectKey),
}

/// A shared, cheap-to-clone cache of projections; see the module docs.
pub struct Store<P> {
    objects: Arc<RwLock<HashMap<ObjectKey, Arc<P>>>>,
    /// Becomes `true` after the first full list and stays so: a relist swaps content,
    /// it never makes the cache "unsynced" again (readers would stall on every 410).
    synced: Arc<watch::Sender<bool>>,
}

// === impl Store ===

impl<P> Clone for Store<P> {
    fn clone(&self) -> Self {
        Store {
            objects: Arc::clone(&self.objects),
            synced: Arc::clone(&self.synced),
        }
    }
}

impl<P> Default for Store<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> fmt::Debug for Store<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Contents are left out: projections may hold data that must not be logged.
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl<P> Store<P> {
    #[must_use]
    pub(crate) fn new() -> Store<P> {
        let (synced, _) = watch::channel(false);
        Store {
            objects: Arc::new(RwLock::new(HashMap::new())),
            synced: Arc::new(synced),
        }
    }

    /// The cached projection of `key`, if the object exists and was projected.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<P>> {
        self.read().get(key).cloned()
    }

    /// A snapshot of every cached projection, in no particular order.
    pub(crate) fn list(&self) -> Vec<Arc<P>> {
        self.read().values().cloned().collect()
    }

    /// Every cached key, sorted.
    pub fn keys(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<_> = self.read().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full list has landed; before that, an absent key proves nothing.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first full list. Reconciling before it would treat objects not yet
    /// listed as absent (and, say, recreate or detach them).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Replaces the whole content at once with what a (re)list returned, and marks the
    /// store synced. Whatever the list did not return is gone: deletions missed while
    /// the watch was down must not linger.
    pub(crate) fn replace_all(&self, items: impl IntoIterator<Item = (ObjectKey, P)>) {
        let fresh: HashMap<_, _> = items.into_iter().map(|(k, p)| (k, Arc::new(p))).collect();
        // Built outside the lock; readers see either the old map or the new one.
        *self.write() = fresh;
        self.synced.send_replace(true);
    }

    pub(crate) fn apply(&self, change: Change<P>) {
        let mut objects = self.write();
        match change {
            Change::Applied(key, p) => {
                objects.insert(key, Arc::new(p));
            }
            Change::Deleted(key) => {
                objects.remove(&key);
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<ObjectKey, Arc<P>>> {
        // Writers only insert, remove or swap whole maps: a panic cannot leave the map
        // half-written, so a poisoned lock is still sound to read.
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ObjectKey, Arc<P>>> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl Store (test accessors) ===

#[cfg(test)]
impl<P> Store<P> {
    /// A snapshot of every key with its projection, sorted by key (stable, for
    /// comparing).
    pub(crate) fn snapshot(&self) -> Vec<(ObjectKey, Arc<P>)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(ns: &str, name: &str) -> ObjectKey {
        ObjectKey::namespaced(ns, name)
    }

    #[test]
    fn key_of_meta_keeps_namespace_and_skips_nameless() {
        let mut meta = ObjectMeta {
            name: Some("s".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        };
        assert_eq!(ObjectKey::of(&meta), Some(key("ns", "s")));
        meta.namespace = None;
        assert_eq!(ObjectKey::of(&meta), Some(ObjectKey::cluster("s")));
        meta.name = None;
        assert_eq!(ObjectKey::of(&meta), None);
    }

    #[test]
    fn key_displays_as_namespace_slash_name() {
        assert_eq!(key("a", "b").to_string(), "a/b");
        assert_eq!(ObjectKey::cluster("c").to_string(), "c");
    }

    #[test]
    fn apply_inserts_replaces_and_deletes() {
        let s = Store::new();
        s.apply(Change::Applied(key("a", "x"), 1));
        s.apply(Change::Applied(key("a", "x"), 2));
        s.apply(Change::Applied(key("b", "x"), 3));
        assert_eq!(s.get(&key("a", "x")).as_deref(), Some(&2));
        assert_eq!(s.len(), 2);
        s.apply(Change::Deleted(key("a", "x")));
        assert_eq!(s.get(&key("a", "x")), None);
        assert_eq!(s.keys(), vec![key("b", "x")]);
    }

    #[test]
    fn relist_drops_what_it_did_not_return() {
        let s = Store::new();
        s.replace_all([(key("a", "old"), 1), (key("a", "kept"), 2)]);
        s.replace_all([(key("a", "kept"), 20), (key("a", "new"), 3)]);
        let got: Vec<_> = s.snapshot().into_iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(got, vec![(key("a", "kept"), 20), (key("a", "new"), 3)]);
    }

    #[test]
    fn snapshot_outlives_later_changes() {
        let s = Store::new();
        s.replace_all([(key("a", "x"), 1)]);
        let before = s.list();
        s.replace_all(Vec::new());
        assert_eq!(*before[0], 1);
        assert!(s.is_empty());
    }

    #[test]
    fn clones_share_content() {
        let s = Store::new();
        let reader = s.clone();
        s.apply(Change::Applied(ObjectKey::cluster("x"), "v"));
        assert_eq!(reader.get(&ObjectKey::cluster("x")).as_deref(), Some(&"v"));
    }

    #[test]
    fn debug_does_not_print_contents() {
        let s = Store::new();
        s.apply(Change::Applied(ObjectKey::cluster("x"), "hunter2"));
        let out = format!("{s:?}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("len: 1"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn synced_only_after_first_full_list() {
        let s: Store<u8> = Store::new();
        // Watch events before the first list do not make the store synced.
        s.apply(Change::Applied(ObjectKey::cluster("x"), 1));
        assert!(!s.is_synced());
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.wait_synced().await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        s.replace_all(Vec::new());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("wait_synced did not return after the first list")
            .unwrap();
        assert!(s.is_synced());
        // Already synced: returns at once.
        s.wait_synced().await;
    }
}
