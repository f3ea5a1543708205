//! The shared pull secrets merge CRs write into (`secretPolicy: Merge`). They carry no
//! label of ours, so the managed-Secret watch cannot see them: each `secretName` a merge
//! CR uses is watched on its own, cluster-wide, with a `metadata.name` field selector,
//! and kept as a small projection (never the credentials). Watches start on first use
//! and stop once no CR uses the name and no CR's hosts remain in its Secrets.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::k8s::kind::SECRETS;
use crate::k8s::types::Secret;
use crate::k8s::Client;
use crate::metrics;
use crate::reconcile::shared::{self, SharedSecret};
use crate::reconcile::spec::{EcrPullSecret, SecretPolicy};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watcher::{spawn_reflector_into, Event, KubeListWatch, WatcherConfig};

use super::routing::ECHO_DEBOUNCE;

/// How long a reconcile waits for a new watch's first list before it retries later.
const FIRST_LIST: Duration = Duration::from_secs(5);

/// The watches of shared pull secrets, one per name.
#[derive(Clone)]
pub struct SharedSecrets {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    queue: WorkQueue<String>,
    crs: Mutex<Option<Store<EcrPullSecret>>>,
    shutdown: watch::Receiver<bool>,
    watched: Mutex<HashMap<String, Watched>>,
    /// Set when CRs changed; the pruner then drops unused watches.
    changed: tokio::sync::Notify,
}

/// One name's watch and what it holds.
struct Watched {
    store: Store<SharedSecret>,
    task: JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl SharedSecrets ===

impl SharedSecrets {
    pub fn new(client: Client, queue: WorkQueue<String>, shutdown: watch::Receiver<bool>) -> Self {
        SharedSecrets {
            inner: Arc::new(Inner {
                client,
                queue,
                crs: Mutex::new(None),
                shutdown,
                watched: Mutex::new(HashMap::new()),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Lets a shared Secret's change enqueue the merge CRs.
    pub fn set_crs(&self, crs: Store<EcrPullSecret>) {
        *lock(&self.inner.crs) = Some(crs);
    }

    /// The Secrets named `name` in every namespace, once the watch of that name (started
    /// here on first use) has listed them; `None` while it has not.
    pub async fn named(&self, name: &str) -> Option<Vec<Arc<SharedSecret>>> {
        let store = self.watch(name);
        if !store.is_synced() {
            let _ = tokio::time::timeout(FIRST_LIST, store.wait_synced()).await;
        }
        store.is_synced().then(|| store.list())
    }

    /// Every watched Secret holding hosts recorded for CR `owner`.
    pub fn holding(&self, owner: &str) -> Vec<Arc<SharedSecret>> {
        let stores: Vec<Store<SharedSecret>> = lock(&self.inner.watched)
            .values()
            .map(|w| w.store.clone())
            .collect();
        stores
            .iter()
            .flat_map(|s| s.list())
            .filter(|s| s.hosts_of(owner).next().is_some())
            .collect()
    }

    /// Our write's answer, ahead of the watch.
    pub fn written(&self, secret: &Secret) {
        let meta = &secret.metadata;
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            if let Some(store) = self.store(name) {
                store.write_through(
                    ObjectKey::namespaced(ns.as_str(), name.as_str()),
                    SharedSecret::project(secret),
                );
            }
        }
    }

    /// A Secret we deleted or found gone.
    pub fn deleted(&self, namespace: &str, name: &str) {
        if let Some(store) = self.store(name) {
            store.write_through(ObjectKey::namespaced(namespace, name), None);
        }
    }

    /// How many names are watched now.
    pub fn watched(&self) -> usize {
        lock(&self.inner.watched).len()
    }

    /// A merge CR was created, changed or deleted: the other merge CRs of its
    /// `secretName` look again, since a claim on a host is reported by both sides.
    pub fn cr_changed(&self, cr: &EcrPullSecret) {
        if !is_merge(cr) {
            return;
        }
        let Some(crs) = lock(&self.inner.crs).clone() else {
            return;
        };
        for other in crs.list() {
            if let Some(name) = &other.metadata.name {
                if is_merge(&other)
                    && other.spec.secret_name == cr.spec.secret_name
                    && Some(name) != cr.metadata.name.as_ref()
                {
                    self.inner.queue.add(name.clone());
                }
            }
        }
    }

    /// CRs changed: prune soon (see [`SharedSecrets::spawn_pruner`]).
    pub fn references_changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Drops unused watches a moment after CRs change (an edit storm prunes once).
    pub fn spawn_pruner(&self) -> JoinHandle<()> {
        super::spawn_pruner(
            self.clone(),
            |this| &this.inner.changed,
            Self::prune,
            self.inner.shutdown.clone(),
        )
    }

    /// Keeps the watch of a name while a merge CR uses it, or while its Secrets still
    /// hold hosts of a CR that exists (to take them out when that CR moved on).
    pub fn prune(&self) {
        let Some(crs) = lock(&self.inner.crs).clone() else {
            return;
        };
        let crs = crs.list();
        let used: HashSet<&str> = crs
            .iter()
            .filter(|cr| is_merge(cr))
            .map(|cr| cr.spec.secret_name.as_str())
            .collect();
        let existing: HashSet<&str> = crs
            .iter()
            .filter_map(|cr| cr.metadata.name.as_deref())
            .collect();
        lock(&self.inner.watched).retain(|name, w| {
            used.contains(name.as_str())
                || w.store
                    .list()
                    .iter()
                    .any(|s| existing.iter().any(|cr| s.hosts_of(cr).next().is_some()))
        });
    }

    fn store(&self, name: &str) -> Option<Store<SharedSecret>> {
        lock(&self.inner.watched).get(name).map(|w| w.store.clone())
    }

    fn watch(&self, name: &str) -> Store<SharedSecret> {
        let mut watched = lock(&self.inner.watched);
        if let Some(w) = watched.get(name) {
            return w.store.clone();
        }
        let inner = Arc::downgrade(&self.inner);
        let secret_name = name.to_string();
        let store: Store<SharedSecret> = Store::new();
        let (_, task) = spawn_reflector_into(
            store.clone(),
            KubeListWatch {
                client: self.inner.client.clone(),
                collection: SECRETS.collection(None),
                label_selector: None,
                field_selector: Some(format!("metadata.name={name}")),
            },
            WatcherConfig::new(format!("shared secrets {name}")).with_metrics(metrics::runtime()),
            SharedSecret::project,
            move |event: Event<Secret>| {
                // Mostly someone else's edit (the store drops echoes of our writes): after the
                // debounce, the merge CRs of this name look, and so do the CRs with
                // hosts recorded in it (one that left Merge takes them out).
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                if let Event::Applied(s) | Event::Deleted(s) = &event {
                    for owner in shared::owners(s).into_values() {
                        inner.queue.add_after(owner, ECHO_DEBOUNCE);
                    }
                }
                let crs = lock(&inner.crs).clone();
                for cr in crs.iter().flat_map(|c| c.list()) {
                    if is_merge(&cr) && cr.spec.secret_name == secret_name {
                        if let Some(cr_name) = &cr.metadata.name {
                            inner.queue.add_after(cr_name.clone(), ECHO_DEBOUNCE);
                        }
                    }
                }
            },
            self.inner.shutdown.clone(),
        );
        watched.insert(
            name.to_string(),
            Watched {
                store: store.clone(),
                task,
            },
        );
        store
    }
}

fn is_merge(cr: &EcrPullSecret) -> bool {
    cr.spec.secret_policy == Some(SecretPolicy::Merge)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
