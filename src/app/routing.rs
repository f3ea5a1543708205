//! Which watch event enqueues which CR: every CR on an event that may concern any of
//! them, the owner on a managed Secret's change, and a short debounce for the echoes of
//! our own writes.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::k8s::kind::{ECR_PULL_SECRETS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS};
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::k8s::Client;
use crate::reconcile::spec::EcrPullSecret;
use crate::reconcile::state::{
    project_namespace, ManagedSecret, SaView, MANAGED_SELECTOR, OWNER_ANNOTATION,
};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::Store;
use crate::runtime::watcher::{spawn_reflector, Event, KubeListWatch, WatcherConfig};

use super::caches::Caches;
use super::credentials::CredentialSecrets;

/// Enqueues every CR (cheap: the queue collapses dirty keys, and a reconcile that finds
/// nothing to change writes nothing).
pub(crate) fn enqueue_all(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add(key.name);
    }
}

/// Secret and ServiceAccount events are mostly our own writes echoing back, one per
/// object written. Enqueued after this delay, a burst of echoes costs one reconcile per
/// CR (the queue keeps the earliest pending time) instead of one per echo; a hand edit or
/// a deleted Secret is still repaired within a fraction of a second.
pub const ECHO_DEBOUNCE: Duration = Duration::from_millis(250);

fn enqueue_all_soon(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add_after(key.name, ECHO_DEBOUNCE);
    }
}

/// Starts the four reflectors. Handlers run after the cache took the change, so the
/// reconcile they trigger sees it.
pub fn start_watches(
    client: &Client,
    queue: &WorkQueue<String>,
    credentials: &CredentialSecrets,
    shutdown: &watch::Receiver<bool>,
) -> (Caches, Vec<JoinHandle<()>>) {
    let lw = |collection: String, label_selector: Option<&str>| KubeListWatch {
        client: client.clone(),
        collection,
        label_selector: label_selector.map(str::to_string),
        field_selector: None,
    };
    let (q, creds) = (queue.clone(), credentials.clone());
    let (crs, cr_task) = spawn_reflector(
        lw(ECR_PULL_SECRETS.collection(None), None),
        WatcherConfig::new("ecrpullsecrets"),
        |cr: &EcrPullSecret| Some(cr.clone()),
        move |event| on_cr(&q, &creds, event),
        shutdown.clone(),
    );
    let (q, c) = (queue.clone(), crs.clone());
    let (namespaces, ns_task) = spawn_reflector(
        lw(NAMESPACES.collection(None), None),
        WatcherConfig::new("namespaces"),
        project_namespace,
        move |_: Event<Namespace>| enqueue_all(&q, &c),
        shutdown.clone(),
    );
    let (q, c) = (queue.clone(), crs.clone());
    let (secrets, secret_task) = spawn_reflector(
        lw(SECRETS.collection(None), Some(MANAGED_SELECTOR)),
        WatcherConfig::new("managed secrets"),
        ManagedSecret::project,
        move |event| on_managed_secret(&q, &c, event),
        shutdown.clone(),
    );
    let (q, c) = (queue.clone(), crs.clone());
    let (service_accounts, sa_task) = spawn_reflector(
        lw(SERVICE_ACCOUNTS.collection(None), None),
        WatcherConfig::new("serviceaccounts"),
        SaView::project,
        move |event: Event<ServiceAccount>| match event {
            Event::Applied(_) | Event::Deleted(_) => enqueue_all_soon(&q, &c),
            Event::Restarted(_) => enqueue_all(&q, &c),
        },
        shutdown.clone(),
    );
    let caches = Caches {
        crs,
        namespaces,
        secrets,
        service_accounts,
        credentials: credentials.clone(),
    };
    (caches, vec![cr_task, ns_task, secret_task, sa_task])
}

/// A CR changed: reconcile it, and let unreferenced credential watches go.
fn on_cr(queue: &WorkQueue<String>, credentials: &CredentialSecrets, event: Event<EcrPullSecret>) {
    match event {
        Event::Applied(cr) | Event::Deleted(cr) => {
            if let Some(name) = cr.metadata.name {
                queue.add(name);
            }
        }
        Event::Restarted(all) => {
            for name in all.into_iter().filter_map(|cr| cr.metadata.name) {
                queue.add(name);
            }
        }
    }
    credentials.references_changed();
}

/// A managed Secret changed: a hand edit or deletion concerns only its owner.
fn on_managed_secret(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>, event: Event<Secret>) {
    match event {
        Event::Applied(s) | Event::Deleted(s) => match s.metadata.annotations.get(OWNER_ANNOTATION)
        {
            Some(owner) => queue.add_after(owner.clone(), ECHO_DEBOUNCE),
            None => enqueue_all(queue, crs),
        },
        Event::Restarted(_) => enqueue_all(queue, crs),
    }
}
