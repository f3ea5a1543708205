//! A cache of watched objects, keyed by (namespace, name), filled by the reflector.
//!
//! The store keeps a projection `P` of each object rather than the object itself: the
//! watcher's caller chooses the few fields it needs (a Secret's name and a hash instead
//! of its data, say), which is where most of an operator's memory goes.
//!
//! Readers clone the handle freely; the reflector writes what the watch delivers. Values
//! are `Arc`ed so a snapshot costs a pointer copy per object, and no lock is held across
//! an `.await`.
//!
//! Read your own writes: a busy API server's watch trails its writes by hundreds of
//! milliseconds, sometimes seconds, so a cache that only the watch fills tells the next
//! reconcile that an object just created is absent (and it creates it again). A
//! successful write's answer is therefore put in front of the cache ([`Store::write_through`])
//! until the watch delivers that very resourceVersion or a later one, or the deletion.
//! Events delivered meanwhile with earlier versions are older than our write (a watch
//! delivers in order), so they update the cache behind it. The watch can also outrun
//! the answer: it may deliver our write and someone's edit after it before the answer
//! arrives. The answer is then older than the cache, and is dropped; standing in front,
//! it would hide the edit for [`AHEAD_FOR`]. "Later" is KEP-5504's integer order
//! ([`resource_version`]); a server with opaque versions gets equality only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::intern::intern;
use crate::k8s::resource_version::{caught_up, later};
use crate::k8s::types::ObjectMeta;

/// Identifies an object within one kind: namespace (`None` when cluster-scoped) and name.
/// Both are interned ([`intern`]): every cache repeats each namespace name, and most
/// objects of a kind share their name (`default`, the pull secret's name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    /// `None` for cluster-scoped kinds (Namespaces, the operator's CRs).
    pub namespace: Option<Arc<str>>,
    /// `metadata.name`.
    pub name: Arc<str>,
}

// === impl ObjectKey ===

impl ObjectKey {
    /// The key of a cluster-scoped object.
    pub(crate) fn cluster(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: None,
            name: intern(name),
        }
    }

    /// The key of a namespaced object.
    pub(crate) fn namespaced(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: Some(intern(namespace)),
            name: intern(name),
        }
    }

    /// The key of an object, or `None` when the server sent it without a name (which
    /// a well-formed answer never does; such objects are skipped, not cached).
    pub(crate) fn of(meta: &ObjectMeta) -> Option<ObjectKey> {
        Some(ObjectKey {
            namespace: meta.namespace.as_deref().map(intern),
            name: intern(meta.name.as_deref()?),
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

/// One change the watch delivered, with the object's resourceVersion.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change<P> {
    /// The object exists with this projection (created or modified).
    Applied(ObjectKey, String, P),
    /// The object is gone, or no longer of interest (its projection became `None`), at
    /// this resourceVersion (empty when unknown).
    Deleted(ObjectKey, String),
}

/// A projection that knows the resourceVersion it was made from, so a write's answer
/// can tell whether the cache has already caught up with it.
pub(crate) trait Versioned {
    /// `metadata.resourceVersion` of the object projected.
    fn resource_version(&self) -> &str;
}

/// How long a write stays in front of the cache at most, whatever the watch does: far
/// longer than any watch lag or stall seen, short enough that a missed event (a relist
/// that skipped it) cannot hide later changes for long.
pub(crate) const AHEAD_FOR: Duration = Duration::from_secs(60);

/// Our write, ahead of the watch. Its resourceVersion is the value's own
/// ([`Contents::version_of`]): a refresh holds one of these per Secret while the echoes
/// trail the answers, and a copy of the version beside each cost 10,000 strings.
struct Ahead<P> {
    /// What the object is now; `None`: deleted (or it left what the cache keeps).
    value: Option<Arc<P>>,
    written: Instant,
}

/// The watched objects, and our writes the watch has not delivered yet.
struct Contents<P> {
    objects: HashMap<ObjectKey, Arc<P>>,
    ahead: HashMap<ObjectKey, Ahead<P>>,
    /// Deletions the watch delivered lately, by the version of the deletion: a write's
    /// answer arriving after the deletion of what it wrote must not resurrect it. Kept
    /// as long as a write may stand in front ([`AHEAD_FOR`]).
    gone: HashMap<ObjectKey, (String, Instant)>,
    /// When `ahead` is next swept of writes older than [`AHEAD_FOR`]. Readers skip those
    /// anyway; sweeping on every event cost a pass over thousands of writes per event
    /// while a refresh's echoes trail it.
    next_sweep: Instant,
    /// How a projection tells its resourceVersion. Set by the first write through the
    /// store (only [`Versioned`] projections are written through), so a store never
    /// written to needs no such bound.
    version_of: Option<fn(&P) -> &str>,
}

/// How often `ahead` is swept of writes the watch never confirmed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A shared, cheap-to-clone cache of projections; see the module docs.
pub(crate) struct Store<P> {
    objects: Arc<RwLock<Contents<P>>>,
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
            objects: Arc::new(RwLock::new(Contents {
                objects: HashMap::new(),
                ahead: HashMap::new(),
                gone: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY,
                version_of: None,
            })),
            synced: Arc::new(synced),
        }
    }

    /// The projection of `key`: our latest write while the watch has not caught up with
    /// it, else what the watch delivered.
    pub(crate) fn get(&self, key: &ObjectKey) -> Option<Arc<P>> {
        let contents = self.read();
        match contents.ahead.get(key).filter(|a| fresh(a)) {
            Some(ahead) => ahead.value.clone(),
            None => contents.objects.get(key).cloned(),
        }
    }

    /// A snapshot of every projection (our writes in front), in no particular order.
    pub(crate) fn list(&self) -> Vec<Arc<P>> {
        let contents = self.read();
        if contents.ahead.is_empty() {
            return contents.objects.values().cloned().collect();
        }
        let mut out: Vec<Arc<P>> = contents
            .objects
            .iter()
            .filter(|(k, _)| !contents.ahead.get(*k).is_some_and(fresh))
            .map(|(_, v)| v.clone())
            .collect();
        out.extend(
            contents
                .ahead
                .values()
                .filter(|a| fresh(a))
                .filter_map(|a| a.value.clone()),
        );
        out
    }

    /// Every key, sorted.
    pub(crate) fn keys(&self) -> Vec<ObjectKey> {
        let contents = self.read();
        let mut keys: Vec<_> = contents
            .objects
            .keys()
            .filter(|k| {
                !contents
                    .ahead
                    .get(*k)
                    .is_some_and(|a| fresh(a) && a.value.is_none())
            })
            .cloned()
            .collect();
        keys.extend(
            contents
                .ahead
                .iter()
                .filter(|(k, a)| {
                    fresh(a) && a.value.is_some() && !contents.objects.contains_key(*k)
                })
                .map(|(k, _)| k.clone()),
        );
        keys.sort();
        keys
    }

    /// How many objects are cached (our writes in front).
    pub(crate) fn len(&self) -> usize {
        self.keys().len()
    }

    /// Writes of ours the watch has not delivered yet.
    #[cfg(test)]
    pub(crate) fn ahead_of_watch(&self) -> usize {
        self.read().ahead.values().filter(|a| fresh(a)).count()
    }

    /// Whether nothing is cached.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full list has landed; before that, an absent key proves nothing.
    pub(crate) fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first full list. Reconciling before it would treat objects not yet
    /// listed as absent (and, say, recreate or detach them).
    pub(crate) async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Replaces the whole content at once with what a (re)list returned, and marks the
    /// store synced. Whatever the list did not return is gone: deletions missed while
    /// the watch was down must not linger. A write of ours the list already shows (same
    /// resourceVersion, or a delete it no longer lists) stops standing in front.
    #[cfg(test)]
    pub(crate) fn replace_all(&self, items: impl IntoIterator<Item = (ObjectKey, String, P)>) {
        self.replace_all_listed(items, None);
    }

    /// [`Store::replace_all`] for a list whose first page was asked for at `list_started`.
    /// A list is a consistent read: a write of ours answered before it started is in it,
    /// so what the list shows (even an absence: a delete by someone else since) wins over
    /// that write. Only writes answered after the list started may still stand in front.
    pub(crate) fn replace_all_listed(
        &self,
        items: impl IntoIterator<Item = (ObjectKey, String, P)>,
        list_started: Option<Instant>,
    ) {
        let mut versions: HashMap<ObjectKey, String> = HashMap::new();
        let mut fresh_objects = HashMap::new();
        for (key, version, p) in items {
            versions.insert(key.clone(), version);
            fresh_objects.insert(key, Arc::new(p));
        }
        // Built outside the lock; readers see either the old map or the new one.
        let mut contents = self.write();
        contents.objects = fresh_objects;
        let version_of = contents.version_of;
        contents.ahead.retain(|key, a| {
            fresh(a)
                && list_started.is_none_or(|t| a.written > t)
                && match a.version(version_of) {
                    Some(v) => !versions.get(key).is_some_and(|seen| caught_up(seen, v)),
                    None => versions.contains_key(key),
                }
        });
        drop(contents);
        self.synced.send_replace(true);
    }

    /// A change the watch delivered. Our write of that very version (or our delete,
    /// for a deletion) has now been seen: it stops standing in front.
    /// Applies what the watch delivered. `true` when it is the echo of a write of ours
    /// the store already holds ([`Store::write_through`]): nothing new to react to.
    pub(crate) fn apply(&self, change: Change<P>) -> bool {
        let mut contents = self.write();
        let echo = match change {
            Change::Applied(key, version, p) => {
                let ahead = contents
                    .ahead
                    .get(&key)
                    .and_then(|a| a.version(contents.version_of));
                let seen = ahead == Some(version.as_str());
                // Our very write (an echo), or a later change that supersedes it.
                if ahead.is_some_and(|ours| caught_up(&version, ours)) {
                    contents.ahead.remove(&key);
                }
                if !contents.gone.is_empty() {
                    contents.gone.remove(&key);
                }
                contents.objects.insert(key, Arc::new(p));
                seen
            }
            Change::Deleted(key, version) => {
                let ahead = contents
                    .ahead
                    .get(&key)
                    .map(|a| a.version(contents.version_of));
                // Our delete (an echo), or a deletion after our write.
                let seen = ahead == Some(None);
                if seen
                    || ahead
                        .flatten()
                        .is_some_and(|ours| caught_up(&version, ours))
                {
                    contents.ahead.remove(&key);
                }
                contents.objects.remove(&key);
                if !version.is_empty() {
                    contents.gone.insert(key, (version, Instant::now()));
                }
                seen
            }
        };
        contents.sweep();
        echo
    }

    /// The watch delivered `version` of `key`. When that is the very write of ours standing
    /// in front, its value (the server's answer to it: the same object) moves into the
    /// cache and `true` comes back, so the caller need not project the event again.
    pub(crate) fn settle_echo(&self, key: &ObjectKey, version: &str) -> bool {
        let mut contents = self.write();
        let ours = contents
            .ahead
            .get(key)
            .is_some_and(|a| fresh(a) && a.version(contents.version_of) == Some(version));
        if !ours {
            return false;
        }
        if let Some(Ahead {
            value: Some(value), ..
        }) = contents.ahead.remove(key)
        {
            contents.objects.insert(key.clone(), value);
        }
        contents.sweep();
        true
    }

    fn read(&self) -> RwLockReadGuard<'_, Contents<P>> {
        // Writers only insert, remove or swap whole maps: a panic cannot leave the map
        // half-written, so a poisoned lock is still sound to read.
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Contents<P>> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P: Versioned> Store<P> {
    /// Our write of `key` succeeded and the server answered with `value` (`None`: we
    /// deleted it, or it left what the cache keeps). Until the watch delivers it, readers
    /// see it. A write the watch has already delivered, or passed (its events outran the
    /// answer), changes nothing.
    pub(crate) fn write_through(&self, key: ObjectKey, value: Option<P>) {
        let mut contents = self.write();
        let delivered = match &value {
            Some(v) => {
                let ours = v.resource_version();
                let shown = contents.objects.get(&key).map(|o| o.resource_version());
                let deleted = contents.gone.get(&key).map(|(d, _)| d.as_str());
                shown.is_some_and(|o| caught_up(o, ours))
                    || deleted.is_some_and(|d| caught_up(d, ours))
            }
            None => !contents.objects.contains_key(&key),
        };
        Self::stand_in_front(&mut contents, key, value, delivered);
    }

    /// We deleted `key` as it was at resourceVersion `deleted` (the delete's
    /// precondition; empty when unknown). Until the watch delivers the deletion, readers
    /// see it gone. A version later than `deleted` in the cache is a re-creation the watch
    /// delivered before our answer: the deletion is behind it, and changes nothing.
    pub(crate) fn delete_through(&self, key: ObjectKey, deleted: &str) {
        let mut contents = self.write();
        let delivered = contents
            .objects
            .get(&key)
            .is_none_or(|o| later(o.resource_version(), deleted));
        Self::stand_in_front(&mut contents, key, None, delivered);
    }

    fn stand_in_front(
        contents: &mut Contents<P>,
        key: ObjectKey,
        value: Option<P>,
        delivered: bool,
    ) {
        if delivered {
            contents.ahead.remove(&key);
            return;
        }
        contents.version_of = Some(P::resource_version);
        let value = value.map(Arc::new);
        if let Some(v) = &value {
            // The cache's older version is behind our write either way: share our value
            // in its place rather than keep both until the echo comes. With every write
            // of a refresh answered before its echo, that was a second projection of
            // every Secret at once.
            let older = contents
                .objects
                .get(&key)
                .is_some_and(|o| later(v.resource_version(), o.resource_version()));
            if older {
                contents.objects.insert(key.clone(), Arc::clone(v));
            }
        }
        let ahead = Ahead {
            value,
            written: Instant::now(),
        };
        contents.ahead.insert(key, ahead);
    }
}

/// Whether a write still stands in front of the cache.
fn fresh<P>(a: &Ahead<P>) -> bool {
    a.written.elapsed() < AHEAD_FOR
}

// === impl Ahead ===

impl<P> Ahead<P> {
    /// The resourceVersion our write produced; `None` for a delete.
    fn version(&self, version_of: Option<fn(&P) -> &str>) -> Option<&str> {
        Some(version_of?(self.value.as_deref()?))
    }
}

// === impl Contents ===

impl<P> Contents<P> {
    /// Drops writes the watch never confirmed within [`AHEAD_FOR`], at most once per
    /// [`SWEEP_EVERY`].
    fn sweep(&mut self) {
        let now = Instant::now();
        if now >= self.next_sweep {
            self.ahead.retain(|_, a| fresh(a));
            self.gone.retain(|_, (_, at)| at.elapsed() < AHEAD_FOR);
            self.next_sweep = now + SWEEP_EVERY;
        }
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
            .objects
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
        s.apply(Change::Applied(key("a", "x"), "1".into(), 1));
        s.apply(Change::Applied(key("a", "x"), "2".into(), 2));
        s.apply(Change::Applied(key("b", "x"), "3".into(), 3));
        assert_eq!(s.get(&key("a", "x")).as_deref(), Some(&2));
        assert_eq!(s.len(), 2);
        s.apply(Change::Deleted(key("a", "x"), String::new()));
        assert_eq!(s.get(&key("a", "x")), None);
        assert_eq!(s.keys(), vec![key("b", "x")]);
    }

    #[test]
    fn relist_drops_what_it_did_not_return() {
        let s = Store::new();
        s.replace_all([
            (key("a", "old"), "1".into(), 1),
            (key("a", "kept"), "2".into(), 2),
        ]);
        s.replace_all([
            (key("a", "kept"), "20".into(), 20),
            (key("a", "new"), "3".into(), 3),
        ]);
        let got: Vec<_> = s.snapshot().into_iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(got, vec![(key("a", "kept"), 20), (key("a", "new"), 3)]);
    }

    #[test]
    fn snapshot_outlives_later_changes() {
        let s = Store::new();
        s.replace_all([(key("a", "x"), "1".into(), 1)]);
        let before = s.list();
        s.replace_all(Vec::new());
        assert_eq!(*before[0], 1);
        assert!(s.is_empty());
    }

    #[test]
    fn clones_share_content() {
        let s = Store::new();
        let reader = s.clone();
        s.apply(Change::Applied(ObjectKey::cluster("x"), "1".into(), "v"));
        assert_eq!(reader.get(&ObjectKey::cluster("x")).as_deref(), Some(&"v"));
    }

    #[test]
    fn debug_does_not_print_contents() {
        let s = Store::new();
        s.apply(Change::Applied(
            ObjectKey::cluster("x"),
            "1".into(),
            "hunter2",
        ));
        let out = format!("{s:?}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("len: 1"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn synced_only_after_first_full_list() {
        let s: Store<u8> = Store::new();
        // Watch events before the first list do not make the store synced.
        s.apply(Change::Applied(ObjectKey::cluster("x"), "1".into(), 1));
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

    /// A projection with its version, as the caches' projections carry it.
    #[derive(Debug, PartialEq)]
    struct V(&'static str, u32);

    impl Versioned for V {
        fn resource_version(&self) -> &str {
            self.0
        }
    }

    fn value(s: &Store<V>, k: &ObjectKey) -> Option<u32> {
        s.get(k).map(|v| v.1)
    }

    /// A synced store holding `a/x` at version 5 (value 1), and that key.
    fn holding_5() -> (Store<V>, ObjectKey) {
        let s = Store::new();
        let k = key("a", "x");
        s.replace_all([(k.clone(), "5".into(), V("5", 1))]);
        (s, k)
    }

    #[tokio::test(start_paused = true)]
    async fn our_write_stands_in_front_until_the_watch_delivers_that_version() {
        let s: Store<V> = Store::new();
        let k = key("a", "x");
        s.replace_all(Vec::new());
        // Created by us: the watch has not said so yet.
        s.write_through(k.clone(), Some(V("5", 1)));
        assert_eq!(value(&s, &k), Some(1));
        assert_eq!(s.keys(), vec![k.clone()]);
        assert_eq!(s.list().len(), 1);
        // Older events still in flight update the cache behind our write.
        s.apply(Change::Applied(k.clone(), "4".into(), V("4", 0)));
        assert_eq!(value(&s, &k), Some(1));
        // Our version arrives: the cache has caught up.
        s.apply(Change::Applied(k.clone(), "5".into(), V("5", 1)));
        assert_eq!(s.ahead_of_watch(), 0);
        // Someone else's later change is seen at once.
        s.apply(Change::Applied(k.clone(), "6".into(), V("6", 2)));
        assert_eq!(value(&s, &k), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn our_delete_stands_until_the_deletion_is_delivered() {
        let (s, k) = holding_5();
        s.write_through(k.clone(), None);
        assert_eq!(value(&s, &k), None);
        assert!(s.keys().is_empty());
        assert!(s.list().is_empty());
        s.apply(Change::Applied(k.clone(), "6".into(), V("6", 2)));
        assert_eq!(value(&s, &k), None, "an older modification, in flight");
        s.apply(Change::Deleted(k.clone(), String::new()));
        assert_eq!(s.ahead_of_watch(), 0);
        s.apply(Change::Applied(k.clone(), "9".into(), V("9", 3)));
        assert_eq!(value(&s, &k), Some(3), "recreated later by someone else");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_watch_already_delivered_or_a_relist_showed_is_not_kept() {
        let (s, k) = holding_5();
        s.write_through(k.clone(), Some(V("5", 1)));
        assert_eq!(s.ahead_of_watch(), 0, "the event outran the answer");
        s.write_through(k.clone(), Some(V("7", 2)));
        s.replace_all([(k.clone(), "7".into(), V("7", 2))]);
        assert_eq!(s.ahead_of_watch(), 0, "the relist shows our write");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_the_watch_has_passed_does_not_hide_the_later_change() {
        let (s, k) = holding_5();
        // Our write made 6; someone edited it to 10; the watch delivered both before
        // our answer (version 6) arrived.
        s.apply(Change::Applied(k.clone(), "6".into(), V("6", 2)));
        s.apply(Change::Applied(k.clone(), "10".into(), V("10", 3)));
        s.write_through(k.clone(), Some(V("6", 2)));
        assert_eq!(value(&s, &k), Some(3), "10 is later than 6, not earlier");
        assert_eq!(s.ahead_of_watch(), 0);
        // A later version supersedes a write still in front, and the relist does too.
        s.write_through(k.clone(), Some(V("11", 4)));
        assert!(!s.apply(Change::Applied(k.clone(), "12".into(), V("12", 5))));
        assert_eq!((value(&s, &k), s.ahead_of_watch()), (Some(5), 0));
        s.write_through(k.clone(), Some(V("13", 6)));
        s.replace_all([(k.clone(), "14".into(), V("14", 7))]);
        assert_eq!((value(&s, &k), s.ahead_of_watch()), (Some(7), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deletion_the_watch_has_passed_does_not_hide_the_re_creation() {
        let (s, k) = holding_5();
        // We deleted version 5; someone created it again (9) before our answer.
        s.apply(Change::Deleted(k.clone(), String::new()));
        s.apply(Change::Applied(k.clone(), "9".into(), V("9", 2)));
        s.delete_through(k.clone(), "5");
        assert_eq!(value(&s, &k), Some(2));
        // Not yet delivered: the deletion stands in front of version 5.
        let k2 = key("a", "y");
        s.apply(Change::Applied(k2.clone(), "5".into(), V("5", 1)));
        s.delete_through(k2.clone(), "5");
        assert_eq!(value(&s, &k2), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_to_a_write_deleted_since_does_not_resurrect_it() {
        let (s, k) = holding_5();
        // Our update made 6; someone deleted it at 7; the watch delivered both first.
        s.apply(Change::Applied(k.clone(), "6".into(), V("6", 2)));
        s.apply(Change::Deleted(k.clone(), "7".into()));
        s.write_through(k.clone(), Some(V("6", 2)));
        assert_eq!((value(&s, &k), s.ahead_of_watch()), (None, 0));
        // A write standing in front is superseded by a later deletion too.
        let k2 = key("a", "y");
        s.write_through(k2.clone(), Some(V("8", 3)));
        s.apply(Change::Deleted(k2.clone(), "9".into()));
        assert_eq!((value(&s, &k2), s.ahead_of_watch()), (None, 0));
        // Re-created after the deletion: a new write of it stands as usual.
        s.apply(Change::Applied(k.clone(), "10".into(), V("10", 4)));
        s.write_through(k.clone(), Some(V("11", 5)));
        assert_eq!(value(&s, &k), Some(5));
        // Tombstones go with the writes they guard against.
        s.apply(Change::Deleted(k.clone(), "12".into()));
        tokio::time::sleep(AHEAD_FOR + Duration::from_secs(1)).await;
        s.apply(Change::Applied(key("b", "z"), "13".into(), V("13", 0)));
        assert!(s.read().gone.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn our_write_replaces_the_older_cached_object_instead_of_doubling_it() {
        let (s, k) = holding_5();
        s.write_through(k.clone(), Some(V("7", 2)));
        let cached: Vec<_> = s.snapshot().into_iter().map(|(_, v)| v.1).collect();
        assert_eq!(cached, vec![2], "one projection, ours");
        // An older event still in flight goes behind our write, as before.
        s.apply(Change::Applied(k.clone(), "6".into(), V("6", 9)));
        assert_eq!(value(&s, &k), Some(2));
        assert!(s.settle_echo(&k, "7"));
        assert_eq!(value(&s, &k), Some(2));
        // Opaque versions: no order, so the cache keeps what the watch said.
        let o = key("a", "y");
        s.apply(Change::Applied(o.clone(), "b".into(), V("b", 1)));
        s.write_through(o.clone(), Some(V("c", 2)));
        let kept = s
            .snapshot()
            .into_iter()
            .find(|(kk, _)| *kk == o)
            .map(|(_, v)| v.1);
        assert_eq!(kept, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn opaque_versions_are_compared_for_equality_only() {
        let s: Store<V> = Store::new();
        let k = key("a", "x");
        s.replace_all([(k.clone(), "b".into(), V("b", 1))]);
        s.write_through(k.clone(), Some(V("a", 2)));
        assert_eq!(
            value(&s, &k),
            Some(2),
            "no order: our answer stands in front"
        );
        s.apply(Change::Applied(k.clone(), "c".into(), V("c", 3)));
        assert_eq!(value(&s, &k), Some(2), "nor can c be known to supersede it");
        s.apply(Change::Applied(k.clone(), "a".into(), V("a", 2)));
        assert_eq!(s.ahead_of_watch(), 0);
        // Unknown deleted version: only the absence is proof.
        s.delete_through(k.clone(), "");
        assert_eq!(value(&s, &k), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_never_delivered_stops_standing_in_front_after_a_while() {
        let (s, k) = holding_5();
        s.write_through(k.clone(), Some(V("7", 2)));
        // An older event goes behind our write; then the echo of 7 never comes.
        s.apply(Change::Applied(k.clone(), "6".into(), V("6", 3)));
        assert_eq!(value(&s, &k), Some(2));
        tokio::time::sleep(AHEAD_FOR + Duration::from_secs(1)).await;
        assert_eq!(value(&s, &k), Some(3), "the watch's word again");
        s.apply(Change::Applied(key("b", "y"), "8".into(), V("8", 0)));
        assert_eq!(s.read().ahead.len(), 0, "expired writes are dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_started_after_our_write_wins_even_when_it_lacks_the_object() {
        let s: Store<V> = Store::new();
        let (gone, kept) = (key("a", "x"), key("a", "y"));
        s.replace_all_listed(
            [
                (gone.clone(), "5".into(), V("5", 1)),
                (kept.clone(), "5".into(), V("5", 1)),
            ],
            Some(Instant::now()),
        );
        s.write_through(gone.clone(), Some(V("7", 2)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Someone deletes `gone` after our update; the watch was down; a relist starts.
        let list_started = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        s.write_through(kept.clone(), Some(V("9", 3)));
        s.replace_all_listed([(kept.clone(), "6".into(), V("6", 1))], Some(list_started));
        assert_eq!(
            value(&s, &gone),
            None,
            "the list saw the delete after our write"
        );
        assert_eq!(
            value(&s, &kept),
            Some(3),
            "a write answered after the list started may be newer than it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_echo_of_our_write_settles_it_into_the_cache_without_a_projection() {
        let (s, k) = holding_5();
        s.write_through(k.clone(), Some(V("7", 2)));
        assert!(!s.settle_echo(&k, "6"), "an older event is no echo of ours");
        assert!(!s.settle_echo(&key("a", "y"), "7"), "nor another object's");
        assert!(s.settle_echo(&k, "7"));
        assert_eq!(s.ahead_of_watch(), 0);
        assert_eq!(
            value(&s, &k),
            Some(2),
            "our write's value is now the cache's"
        );
        assert!(!s.settle_echo(&k, "7"), "settled once");
        s.write_through(k.clone(), Some(V("9", 3)));
        tokio::time::sleep(AHEAD_FOR + Duration::from_secs(1)).await;
        assert!(
            !s.settle_echo(&k, "9"),
            "a write past AHEAD_FOR no longer stands"
        );
        assert_eq!(
            value(&s, &k),
            Some(3),
            "the cache took our write in place of the older 7"
        );
    }
}
