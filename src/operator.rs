//! Wiring: watches feed the caches and the work queue, the controller runs the reconciler
//! (on the leader only, when elected), probes and metrics report on it all.
//!
//! ```text
//! ECRPullSecrets ─┐                      ┌─> Reconciler ─> Secrets, ServiceAccounts,
//! Namespaces ─────┤ reflectors ─> queue ─┤                 status, events
//! managed Secrets ┤  (caches)            └─ TokenCache ─> AWS (one call per group)
//! ServiceAccounts ┘
//! credentials Secrets ─> aws::SecretCredentials channels
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::credentials::{credentials_from_secret_data, SecretCredentials, SecretState};
use crate::k8s::kind::{ECR_PULL_SECRETS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS};
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::k8s::Client;
use crate::metrics;
use crate::reconcile::reconciler::{ObservedState, Reconciler};
use crate::reconcile::select::NamespaceView;
use crate::reconcile::spec::{EcrPullSecret, SecretRef};
use crate::reconcile::state::{
    project_namespace, ManagedSecret, SaView, MANAGED_SELECTOR, OWNER_ANNOTATION,
};
use crate::reconcile::tokens::FetchToken;
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watcher::{spawn_reflector, Event, KubeListWatch, WatcherConfig};

/// The watch caches the reconciler reads.
#[derive(Clone, Debug, Default)]
pub struct Caches {
    pub crs: Store<EcrPullSecret>,
    pub namespaces: Store<NamespaceView>,
    pub secrets: Store<ManagedSecret>,
    pub service_accounts: Store<SaView>,
}

impl Caches {
    /// Resolves once every cache has its first full list.
    pub async fn synced(&self) {
        self.crs.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.secrets.wait_synced().await;
        self.service_accounts.wait_synced().await;
    }

    pub fn is_synced(&self) -> bool {
        self.crs.is_synced()
            && self.namespaces.is_synced()
            && self.secrets.is_synced()
            && self.service_accounts.is_synced()
    }

    /// Every CR name, to enqueue after a change that may concern any of them.
    pub fn cr_names(&self) -> Vec<String> {
        self.crs.keys().into_iter().map(|k| k.name).collect()
    }
}

impl ObservedState for Caches {
    fn cr(&self, name: &str) -> Option<EcrPullSecret> {
        self.crs
            .get(&ObjectKey::cluster(name))
            .map(|c| (*c).clone())
    }
    fn namespaces(&self) -> Vec<NamespaceView> {
        self.namespaces
            .list()
            .iter()
            .map(|n| (**n).clone())
            .collect()
    }
    fn managed_secrets(&self) -> Vec<ManagedSecret> {
        self.secrets.list().iter().map(|s| (**s).clone()).collect()
    }
    fn service_accounts(&self) -> Vec<SaView> {
        self.service_accounts
            .list()
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }
}

/// Enqueues every CR (cheap: the queue collapses dirty keys, and a reconcile that finds
/// nothing to change writes nothing).
fn enqueue_all(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add(key.name);
    }
}

/// Starts the four reflectors. Handlers run after the cache took the change, so the
/// reconcile they trigger sees it.
pub fn start_watches(
    client: &Client,
    queue: &WorkQueue<String>,
    shutdown: &watch::Receiver<bool>,
) -> (Caches, Vec<JoinHandle<()>>) {
    let mut tasks = Vec::new();
    let lw = |collection: String, label_selector: Option<&str>| KubeListWatch {
        client: client.clone(),
        collection,
        label_selector: label_selector.map(str::to_string),
        field_selector: None,
    };

    let q = queue.clone();
    let (crs, task) = spawn_reflector(
        lw(ECR_PULL_SECRETS.collection(None), None),
        WatcherConfig::new("ecrpullsecrets"),
        |cr: &EcrPullSecret| Some(cr.clone()),
        move |event: Event<EcrPullSecret>| match event {
            Event::Applied(cr) | Event::Deleted(cr) => {
                if let Some(name) = cr.metadata.name {
                    q.add(name);
                }
            }
            Event::Restarted(all) => {
                for cr in all {
                    if let Some(name) = cr.metadata.name {
                        q.add(name);
                    }
                }
            }
        },
        shutdown.clone(),
    );
    tasks.push(task);

    let (q, c) = (queue.clone(), crs.clone());
    let (namespaces, task) = spawn_reflector(
        lw(NAMESPACES.collection(None), None),
        WatcherConfig::new("namespaces"),
        project_namespace,
        move |_: Event<Namespace>| enqueue_all(&q, &c),
        shutdown.clone(),
    );
    tasks.push(task);

    let (q, c) = (queue.clone(), crs.clone());
    let (secrets, task) = spawn_reflector(
        lw(SECRETS.collection(None), Some(MANAGED_SELECTOR)),
        WatcherConfig::new("managed secrets"),
        ManagedSecret::project,
        move |event: Event<Secret>| match event {
            // A hand edit or deletion concerns only the owner.
            Event::Applied(s) | Event::Deleted(s) => {
                match s.metadata.annotations.get(OWNER_ANNOTATION) {
                    Some(owner) => q.add(owner.clone()),
                    None => enqueue_all(&q, &c),
                }
            }
            Event::Restarted(_) => enqueue_all(&q, &c),
        },
        shutdown.clone(),
    );
    tasks.push(task);

    let (q, c) = (queue.clone(), crs.clone());
    let (service_accounts, task) = spawn_reflector(
        lw(SERVICE_ACCOUNTS.collection(None), None),
        WatcherConfig::new("serviceaccounts"),
        SaView::project,
        move |_: Event<ServiceAccount>| enqueue_all(&q, &c),
        shutdown.clone(),
    );
    tasks.push(task);

    (
        Caches {
            crs,
            namespaces,
            secrets,
            service_accounts,
        },
        tasks,
    )
}

/// Watches the credentials Secrets (the operator-wide one and those CRs name) and
/// publishes each version into the AWS side's channel, so rotated keys apply at once.
#[derive(Clone)]
pub struct CredentialSecrets {
    inner: Arc<CredentialInner>,
}

struct CredentialInner {
    client: Client,
    queue: WorkQueue<String>,
    crs: Mutex<Option<Store<EcrPullSecret>>>,
    shutdown: watch::Receiver<bool>,
    watched: Mutex<HashMap<SecretRef, SecretCredentials>>,
}

impl CredentialSecrets {
    pub fn new(client: Client, queue: WorkQueue<String>, shutdown: watch::Receiver<bool>) -> Self {
        CredentialSecrets {
            inner: Arc::new(CredentialInner {
                client,
                queue,
                crs: Mutex::new(None),
                shutdown,
                watched: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Lets a change of credentials enqueue every CR.
    pub fn set_crs(&self, crs: Store<EcrPullSecret>) {
        if let Ok(mut slot) = self.inner.crs.lock() {
            *slot = Some(crs);
        }
    }

    /// The channel for a Secret, starting its watch on first use. Until the first list
    /// lands the credentials read as "not read yet" (CredentialsMissing, retried).
    pub fn get(&self, r: &SecretRef) -> SecretCredentials {
        let mut watched = match self.inner.watched.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        if let Some(c) = watched.get(r) {
            return c.clone();
        }
        let origin = format!("{}/{}", r.namespace, r.name);
        let (tx, rx) = SecretCredentials::channel(origin.clone());
        watched.insert(r.clone(), rx.clone());
        let inner = self.inner.clone();
        let publish = move |state: SecretState| {
            tx.send_replace(state);
            let crs = inner.crs.lock().ok().and_then(|c| c.clone());
            if let Some(crs) = crs {
                enqueue_all(&inner.queue, &crs);
            }
        };
        let missing = format!("Secret {origin} not found");
        let (_, _task) = spawn_reflector(
            KubeListWatch {
                client: self.inner.client.clone(),
                collection: SECRETS.collection(Some(&r.namespace)),
                label_selector: None,
                field_selector: Some(format!("metadata.name={}", r.name)),
            },
            WatcherConfig::new(format!("credentials secret {origin}")),
            |_: &Secret| Some(()),
            move |event: Event<Secret>| match event {
                Event::Applied(s) => publish(Some(credentials_from_secret_data(&s.data))),
                Event::Deleted(_) => publish(Some(Err(missing.clone()))),
                Event::Restarted(all) => match all.first() {
                    Some(s) => publish(Some(credentials_from_secret_data(&s.data))),
                    None => publish(Some(Err(missing.clone()))),
                },
            },
            self.inner.shutdown.clone(),
        );
        rx
    }
}

/// Keeps the queue-depth gauge current.
pub fn spawn_queue_gauge(
    queue: WorkQueue<String>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            metrics::set_queue_depth(queue.len());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = crate::runtime::shutdown_requested(&mut shutdown) => return,
            }
        }
    })
}

/// Runs one reconcile and records its duration and result.
pub async fn timed_reconcile<F: FetchToken, S: ObservedState>(
    reconciler: &Reconciler<F, S>,
    name: &str,
) -> Result<crate::runtime::controller::Action, crate::reconcile::reconciler::ReconcileError> {
    let started = Instant::now();
    let result = reconciler.reconcile(name).await;
    let label = if result.is_ok() { "success" } else { "error" };
    metrics::observe_reconcile(started.elapsed().as_secs_f64(), label);
    result
}
