//! The credentials Secrets CRs name (and the operator-wide one), each watched on its own:
//! every version is published to the AWS side's channel, so rotated keys apply at once,
//! and each Secret's grant annotation says which CRs may use it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::credentials::{credentials_from_secret_data, SecretCredentials, SecretState};
use crate::k8s::kind::SECRETS;
use crate::k8s::types::Secret;
use crate::k8s::{Client, ListParams};
use crate::metrics;
use crate::reconcile::spec::{EcrPullSecret, SecretRef};
use crate::reconcile::vocab::{split_list, GRANT_ANNOTATION};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::Store;
use crate::runtime::watcher::{spawn_reflector_into, Event, KubeListWatch, WatcherConfig};

/// What a credentials Secret says: its credentials (or why there are none) and the
/// ECRPullSecrets its grant annotation names.
type Read = (SecretState, Vec<String>);

use super::routing::enqueue_all;

/// Watches the credentials Secrets (the operator-wide one and those CRs name) and
/// publishes each version into the AWS side's channel, so rotated keys apply at once.
/// Watches start on first use and stop once no CR refers to their Secret.
#[derive(Clone)]
pub struct CredentialSecrets {
    inner: Arc<CredentialInner>,
}

struct CredentialInner {
    client: Client,
    queue: WorkQueue<String>,
    crs: Mutex<Option<Store<EcrPullSecret>>>,
    shutdown: watch::Receiver<bool>,
    watched: Mutex<HashMap<SecretRef, WatchedSecret>>,
    /// Secrets watched whatever the CRs say (the operator-wide credentials).
    pinned: Mutex<HashSet<SecretRef>>,
    /// Set when CRs changed; the pruner then drops unreferenced watches.
    changed: tokio::sync::Notify,
    /// Run after each prune: other state keyed by CR fields prunes on the same beat.
    also_prune: Mutex<Vec<PruneHook>>,
}

/// Something else to prune when CRs change.
pub type PruneHook = Box<dyn Fn() + Send + Sync>;

/// One watched credentials Secret.
struct WatchedSecret {
    credentials: SecretCredentials,
    /// The CRs its grant annotation names; `None` until first read.
    grants: watch::Receiver<Option<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for WatchedSecret {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a new watch gets to read its Secret once before a caller goes on without it.
const FIRST_READ: Duration = Duration::from_secs(5);

impl CredentialSecrets {
    pub fn new(client: Client, queue: WorkQueue<String>, shutdown: watch::Receiver<bool>) -> Self {
        CredentialSecrets {
            inner: Arc::new(CredentialInner {
                client,
                queue,
                crs: Mutex::new(None),
                shutdown,
                watched: Mutex::new(HashMap::new()),
                pinned: Mutex::new(HashSet::new()),
                changed: tokio::sync::Notify::new(),
                also_prune: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Lets a change of credentials enqueue every CR, and tells which Secrets CRs name.
    pub fn set_crs(&self, crs: Store<EcrPullSecret>) {
        *lock(&self.inner.crs) = Some(crs);
    }

    /// Watches `r` for as long as the operator runs.
    pub fn pin(&self, r: &SecretRef) -> SecretCredentials {
        lock(&self.inner.pinned).insert(r.clone());
        self.get(r)
    }

    /// The channel for a Secret, starting its watch on first use. Until the first list
    /// lands the credentials read as "not read yet" (CredentialsMissing, retried).
    pub fn get(&self, r: &SecretRef) -> SecretCredentials {
        self.watch(r).0
    }

    /// The ECRPullSecrets Secret `r` grants its use to; empty when missing or
    /// unreadable. A watched Secret answers from its watch (at most [`FIRST_READ`] is
    /// waited for its first read). Any other is read once, by name, and only its grant
    /// is kept: naming a Secret opens no watch and loads no credentials until a token is
    /// fetched with it, which only a granted CR gets.
    pub async fn grants(&self, r: &SecretRef) -> Vec<String> {
        let watched = lock(&self.inner.watched).get(r).map(|w| w.grants.clone());
        let Some(mut grants) = watched else {
            return self.read_grants(r).await;
        };
        let _ = tokio::time::timeout(FIRST_READ, grants.wait_for(Option::is_some)).await;
        let current = grants.borrow().clone();
        current.unwrap_or_default()
    }

    /// The grant of an unwatched Secret, by one list with a name fieldSelector (the read
    /// RBAC grants for credentials Secrets).
    async fn read_grants(&self, r: &SecretRef) -> Vec<String> {
        let params = ListParams {
            field_selector: Some(format!("metadata.name={}", r.name)),
            ..Default::default()
        };
        let collection = SECRETS.collection(Some(&r.namespace));
        match self.inner.client.list::<Secret>(&collection, &params).await {
            Ok(list) => list
                .items
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(r.name.as_str()))
                .map(|s| split_list(s.metadata.annotations.get(GRANT_ANNOTATION)))
                .unwrap_or_default(),
            Err(error) => {
                tracing::debug!(%error, namespace = r.namespace, "could not read a credentials Secret's grant");
                Vec::new()
            }
        }
    }

    /// How many Secrets are watched now.
    pub fn watched(&self) -> usize {
        lock(&self.inner.watched).len()
    }

    /// CRs changed: prune soon (see [`CredentialSecrets::spawn_pruner`]).
    pub fn references_changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Stops the watches no CR refers to and that are not pinned, a moment after CRs
    /// change (an edit storm prunes once).
    pub fn spawn_pruner(&self) -> JoinHandle<()> {
        super::spawn_pruner(
            self.clone(),
            |this| &this.inner.changed,
            Self::prune,
            self.inner.shutdown.clone(),
        )
    }

    /// Drops the watches of Secrets neither pinned nor named by a cached CR.
    pub fn prune(&self) {
        let Some(crs) = lock(&self.inner.crs).clone() else {
            return;
        };
        let mut keep: HashSet<SecretRef> = lock(&self.inner.pinned).clone();
        keep.extend(crs.list().iter().filter_map(|cr| {
            cr.spec
                .aws
                .as_ref()
                .and_then(|a| a.credentials_secret_ref.clone())
        }));
        lock(&self.inner.watched).retain(|r, _| keep.contains(r));
        for hook in lock(&self.inner.also_prune).iter() {
            hook();
        }
    }

    /// Runs `hook` after each prune (a moment after CRs change).
    pub fn also_prune(&self, hook: PruneHook) {
        lock(&self.inner.also_prune).push(hook);
    }

    fn watch(&self, r: &SecretRef) -> (SecretCredentials, watch::Receiver<Option<Vec<String>>>) {
        let mut watched = lock(&self.inner.watched);
        if let Some(w) = watched.get(r) {
            return (w.credentials.clone(), w.grants.clone());
        }
        let origin = format!("{}/{}", r.namespace, r.name);
        let (tx, rx) = SecretCredentials::channel(origin.clone());
        let (grants_tx, grants_rx) = watch::channel(None);
        let inner = Arc::downgrade(&self.inner);
        let secret = r.clone();
        let publish = move |state: SecretState, grants: Vec<String>| {
            // A rotated key changes the fetcher's credentials fingerprint, so the token
            // cache refetches that group at the next reconcile; a changed grant is
            // judged at that reconcile, which every CR naming the Secret gets now.
            tx.send_replace(state);
            grants_tx.send_replace(Some(grants));
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let crs = lock(&inner.crs).clone();
            let pinned = lock(&inner.pinned).contains(&secret);
            match crs {
                // The operator-wide credentials serve every CR.
                Some(crs) if pinned => enqueue_all(&inner.queue, &crs),
                Some(crs) => enqueue_naming(&inner.queue, &crs, &secret),
                None => {}
            }
        };
        let missing = format!("Secret {origin} not found");
        // The projection is what the Secret says: its credentials and its grant.
        let read = |s: &Secret| -> Option<Read> {
            let grants = split_list(s.metadata.annotations.get(GRANT_ANNOTATION));
            Some((Some(credentials_from_secret_data(&s.data)), grants))
        };
        let store: Store<Read> = Store::new();
        let listed = store.clone();
        let (_, task) = spawn_reflector_into(
            store,
            KubeListWatch {
                client: self.inner.client.clone(),
                collection: SECRETS.collection(Some(&r.namespace)),
                label_selector: None,
                field_selector: Some(format!("metadata.name={}", r.name)),
            },
            WatcherConfig::new(format!("credentials secret {origin}"))
                .with_metrics(metrics::runtime()),
            read,
            move |event: Event<Secret>| {
                let key = event.keys().into_iter().next();
                match (&event, key.and_then(|k| listed.get(&k))) {
                    (Event::Applied(_) | Event::Restarted(_), Some(read)) => {
                        let (state, grants) = (*read).clone();
                        publish(state, grants)
                    }
                    _ => publish(Some(Err(missing.clone())), Vec::new()),
                }
            },
            self.inner.shutdown.clone(),
        );
        watched.insert(
            r.clone(),
            WatchedSecret {
                credentials: rx.clone(),
                grants: grants_rx.clone(),
                task,
            },
        );
        (rx, grants_rx)
    }
}

/// Enqueues the CRs whose `credentialsSecretRef` is `secret`.
fn enqueue_naming(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>, secret: &SecretRef) {
    for cr in crs.list() {
        if credentials_ref(&cr) == Some(secret) {
            if let Some(name) = &cr.metadata.name {
                queue.add(name.clone());
            }
        }
    }
}

/// The credentials Secret a CR names, if any.
fn credentials_ref(cr: &EcrPullSecret) -> Option<&SecretRef> {
    cr.spec.aws.as_ref()?.credentials_secret_ref.as_ref()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
