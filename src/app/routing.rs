//! Which watch event enqueues which CR: a namespace's change only the CRs that select it
//! or whose last plan touched it, a ServiceAccount's change only the CRs whose last plan
//! touched its namespace, a managed Secret's change only its owner; every CR only after
//! a relist. The echoes of our own writes are debounced.

use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::k8s::kind::{ECR_PULL_SECRETS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS};
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::k8s::Client;
use crate::reconcile::decide::select::NamespaceView;
use crate::reconcile::decide::spec::EcrPullSecret;
use crate::reconcile::decide::state::{project_namespace, ManagedSecret, SaView};
use crate::reconcile::specs::Specs;
use crate::reconcile::vocab::{MANAGED_SELECTOR, OWNER_ANNOTATION};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watcher::{spawn_reflector_into, Event, KubeListWatch, WatcherConfig};

use super::caches::Caches;
use super::shared::SharedSecrets;
use super::wake::{enqueue_all, ECHO_DEBOUNCE};

/// Starts the four reflectors, each filling its store in `caches`. Handlers run after the
/// cache took the change, so the reconcile they trigger sees it. Every CR event wakes
/// `crs_changed`, on which the watches started on demand are pruned.
pub(crate) fn start_watches(
    client: &Client,
    queue: &WorkQueue<String>,
    caches: &Caches,
    specs: &Arc<Specs>,
    crs_changed: &Arc<Notify>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let lw = |collection: String, label_selector: Option<&str>| KubeListWatch {
        client: client.clone(),
        collection,
        label_selector: label_selector.map(str::to_string),
        field_selector: None,
    };
    let (q, sh, changed) = (queue.clone(), caches.shared.clone(), crs_changed.clone());
    let (_, cr_task) = spawn_reflector_into(
        caches.crs.clone(),
        lw(ECR_PULL_SECRETS.collection(None), None),
        WatcherConfig::new("ecrpullsecrets"),
        |cr: &EcrPullSecret| Some(cr.clone()),
        move |event| on_cr(&q, &sh, &changed, event),
        shutdown.clone(),
    );
    let (q, c, s) = (queue.clone(), caches.crs.clone(), specs.clone());
    let (_, ns_task) = spawn_reflector_into(
        caches.namespaces.clone(),
        lw(NAMESPACES.collection(None), None),
        WatcherConfig::new("namespaces"),
        project_namespace,
        move |event| on_namespace(&q, &c, &s, event),
        shutdown.clone(),
    );
    let (q, c) = (queue.clone(), caches.crs.clone());
    let (_, secret_task) = spawn_reflector_into(
        caches.secrets.clone(),
        lw(SECRETS.collection(None), Some(MANAGED_SELECTOR)),
        WatcherConfig::new("managed secrets"),
        ManagedSecret::project,
        move |event| on_managed_secret(&q, &c, event),
        shutdown.clone(),
    );
    let (q, c, s, n) = (
        queue.clone(),
        caches.crs.clone(),
        specs.clone(),
        caches.namespaces.clone(),
    );
    let (_, sa_task) = spawn_reflector_into(
        caches.service_accounts.clone(),
        lw(SERVICE_ACCOUNTS.collection(None), None),
        WatcherConfig::new("serviceaccounts"),
        SaView::project,
        move |event| on_service_account(&q, &c, &s, &n, event),
        shutdown.clone(),
    );
    vec![cr_task, ns_task, secret_task, sa_task]
}

/// A CR changed: reconcile it, and let unreferenced credential and shared-Secret watches
/// go (at the prune `crs_changed` wakes).
fn on_cr(
    queue: &WorkQueue<String>,
    shared: &SharedSecrets,
    crs_changed: &Notify,
    event: Event<EcrPullSecret>,
) {
    match event {
        Event::Applied(cr) | Event::Deleted(cr) => {
            shared.cr_changed(&cr);
            if let Some(name) = cr.metadata.name {
                queue.add(name);
            }
        }
        Event::Restarted(keys) => {
            for key in keys {
                queue.add(key.name.to_string());
            }
        }
    }
    crs_changed.notify_one();
}

/// A namespace changed: wake the CRs it can concern (see [`Specs::concerned`]).
fn on_namespace(
    queue: &WorkQueue<String>,
    crs: &Store<EcrPullSecret>,
    specs: &Specs,
    event: Event<Namespace>,
) {
    match event {
        Event::Applied(ns) | Event::Deleted(ns) => {
            let Some(view) = project_namespace(&ns) else {
                return;
            };
            let all = crs.list();
            let named = all
                .iter()
                .filter_map(|cr| Some((cr.metadata.name.as_deref()?, &cr.spec)));
            for cr in specs.concerned(&view, named) {
                queue.add(cr);
            }
        }
        Event::Restarted(_) => enqueue_all(queue, crs),
    }
}

/// A ServiceAccount changed (mostly our own patches echoing back): wake, after the echo
/// debounce, the CRs its namespace concerns. Selection is checked too, not only the
/// last plans: a ServiceAccount created while a CR was planning that namespace would
/// otherwise wait for the next refresh.
fn on_service_account(
    queue: &WorkQueue<String>,
    crs: &Store<EcrPullSecret>,
    specs: &Specs,
    namespaces: &Store<NamespaceView>,
    event: Event<ServiceAccount>,
) {
    match event {
        Event::Applied(sa) | Event::Deleted(sa) => {
            let ns = sa.metadata.namespace.unwrap_or_default();
            let concerned = match namespaces.get(&ObjectKey::cluster(ns.as_str())) {
                Some(view) => {
                    let all = crs.list();
                    let named = all
                        .iter()
                        .filter_map(|cr| Some((cr.metadata.name.as_deref()?, &cr.spec)));
                    specs.concerned(&view, named)
                }
                None => specs.touching(&ns),
            };
            for cr in concerned {
                queue.add_after(cr, ECHO_DEBOUNCE);
            }
        }
        Event::Restarted(_) => enqueue_all(queue, crs),
    }
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
