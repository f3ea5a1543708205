//! The shared pull secrets merge CRs write into (`secretPolicy: Merge`). They carry no
//! label of ours, so the managed-Secret watch cannot see them: each `secretName` a merge
//! CR uses is watched on its own, cluster-wide, with a `metadata.name` field selector,
//! and kept as a small projection (never the credentials). Watches start on first use
//! and stop once no CR uses the name and no CR's hosts remain in its Secrets.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::k8s::kind::SECRETS;
use crate::k8s::types::Secret;
use crate::k8s::Client;
use crate::reconcile::decide::shared::{self, SharedSecret};
use crate::reconcile::decide::spec::{EcrPullSecret, SecretPolicy};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watch_set::WatchSet;
use crate::runtime::watcher::{spawn_reflector_into, Event, KubeListWatch, WatcherConfig};

use super::wake::ECHO_DEBOUNCE;

/// How long a reconcile waits for a new watch's first list before it retries later.
const FIRST_LIST: Duration = Duration::from_secs(5);

/// The watches of shared pull secrets, one per name, started on first use and stopped
/// at [`SharedSecrets::prune`].
#[derive(Clone)]
pub(crate) struct SharedSecrets {
    queue: WorkQueue<String>,
    crs: Store<EcrPullSecret>,
    watches: WatchSet<String, Store<SharedSecret>>,
}

/// What a name's watch needs to start and to wake CRs.
#[derive(Clone)]
struct Context {
    client: Client,
    queue: WorkQueue<String>,
    crs: Store<EcrPullSecret>,
    shutdown: watch::Receiver<bool>,
}

// === impl SharedSecrets ===

impl SharedSecrets {
    /// A change of a shared Secret enqueues the merge CRs of `crs` writing into it.
    pub(crate) fn new(
        client: Client,
        queue: WorkQueue<String>,
        crs: Store<EcrPullSecret>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let context = Context {
            client,
            queue: queue.clone(),
            crs: crs.clone(),
            shutdown,
        };
        SharedSecrets {
            queue,
            crs,
            watches: WatchSet::new(move |name: &String| start_watch(&context, name)),
        }
    }

    /// The Secrets named `name` in every namespace, once the watch of that name (started
    /// here on first use) has listed them; `None` while it has not.
    pub(crate) async fn named(&self, name: &str) -> Option<Vec<Arc<SharedSecret>>> {
        let store = self.watches.get(&name.to_string());
        if !store.is_synced() {
            let _ = tokio::time::timeout(FIRST_LIST, store.wait_synced()).await;
        }
        store.is_synced().then(|| store.list())
    }

    /// Every watched Secret holding hosts recorded for CR `owner`.
    pub(crate) fn holding(&self, owner: &str) -> Vec<Arc<SharedSecret>> {
        self.watches
            .values()
            .iter()
            .flat_map(|s| s.list())
            .filter(|s| s.hosts_of(owner).next().is_some())
            .collect()
    }

    /// Our write's answer, ahead of the watch.
    pub(crate) fn written(&self, secret: &Secret) {
        let meta = &secret.metadata;
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            if let Some(store) = self.watches.peek(name) {
                store.write_through(
                    ObjectKey::namespaced(ns.as_str(), name.as_str()),
                    SharedSecret::project(secret),
                );
            }
        }
    }

    /// A Secret we deleted at resourceVersion `version`, or found gone (`version` empty).
    pub(crate) fn deleted(&self, namespace: &str, name: &str, version: &str) {
        if let Some(store) = self.watches.peek(&name.to_string()) {
            store.delete_through(ObjectKey::namespaced(namespace, name), version);
        }
    }

    /// A merge CR was created, changed or deleted: the other merge CRs of its
    /// `secretName` look again, since a claim on a host is reported by both sides.
    pub(crate) fn cr_changed(&self, cr: &EcrPullSecret) {
        if !is_merge(cr) {
            return;
        }
        for other in self.crs.list() {
            if let Some(name) = &other.metadata.name {
                if is_merge(&other)
                    && other.spec.secret_name == cr.spec.secret_name
                    && Some(name) != cr.metadata.name.as_ref()
                {
                    self.queue.add(name.clone());
                }
            }
        }
    }

    /// Keeps the watch of a name while a merge CR uses it, or while its Secrets still
    /// hold hosts of a CR that exists (to take them out when that CR moved on).
    pub(crate) fn prune(&self) {
        let crs = self.crs.list();
        let used: HashSet<&str> = crs
            .iter()
            .filter(|cr| is_merge(cr))
            .map(|cr| cr.spec.secret_name.as_str())
            .collect();
        let existing: HashSet<&str> = crs
            .iter()
            .filter_map(|cr| cr.metadata.name.as_deref())
            .collect();
        self.watches.retain(|name, store| {
            used.contains(name.as_str())
                || store
                    .list()
                    .iter()
                    .any(|s| existing.iter().any(|cr| s.hosts_of(cr).next().is_some()))
        });
    }
}

/// Starts the watch of the Secrets named `name`, cluster-wide: a change wakes the merge
/// CRs of that name and the CRs with hosts recorded in it.
fn start_watch(context: &Context, name: &String) -> (Store<SharedSecret>, JoinHandle<()>) {
    let (queue, crs) = (context.queue.clone(), context.crs.clone());
    let secret_name = name.clone();
    let store: Store<SharedSecret> = Store::new();
    let (_, task) = spawn_reflector_into(
        store.clone(),
        KubeListWatch {
            client: context.client.clone(),
            collection: SECRETS.collection(None),
            label_selector: None,
            field_selector: Some(format!("metadata.name={name}")),
        },
        WatcherConfig::new(format!("shared secrets {name}")),
        SharedSecret::project,
        move |event: Event<Secret>| {
            // Mostly someone else's edit (the store drops echoes of our writes): after the
            // debounce, the merge CRs of this name look, and so do the CRs with
            // hosts recorded in it (one that left Merge takes them out).
            if let Event::Applied(s) | Event::Deleted(s) = &event {
                for owner in shared::owners(s).into_values() {
                    queue.add_after(owner, ECHO_DEBOUNCE);
                }
            }
            for cr in crs.list() {
                if is_merge(&cr) && cr.spec.secret_name == secret_name {
                    if let Some(cr_name) = &cr.metadata.name {
                        queue.add_after(cr_name.clone(), ECHO_DEBOUNCE);
                    }
                }
            }
        },
        context.shutdown.clone(),
    );
    (store, task)
}

fn is_merge(cr: &EcrPullSecret) -> bool {
    cr.spec.secret_policy == Some(SecretPolicy::Merge)
}
