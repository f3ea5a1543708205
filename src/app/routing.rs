//! Which watch event enqueues which CR: a namespace's change only the CRs that select it
//! or whose last plan touched it, a ServiceAccount's change only the CRs whose last plan
//! touched its namespace, a managed Secret's change only its owner; every CR only after
//! a relist. The echoes of our own writes are debounced.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::k8s::kind::{ECR_PULL_SECRETS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS};
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::k8s::Client;
use crate::metrics;
use crate::reconcile::select::NamespaceView;
use crate::reconcile::spec::EcrPullSecret;
use crate::reconcile::specs::Specs;
use crate::reconcile::state::{project_namespace, ManagedSecret, SaView};
use crate::reconcile::vocab::{MANAGED_SELECTOR, OWNER_ANNOTATION};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watcher::{spawn_reflector, Event, KubeListWatch, WatcherConfig};

use super::caches::Caches;
use super::credentials::CredentialSecrets;
use super::shared::SharedSecrets;

/// Enqueues every CR (cheap: the queue collapses dirty keys, and a reconcile that finds
/// nothing to change writes nothing).
pub(crate) fn enqueue_all(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add(key.name.to_string());
    }
}

/// Secret and ServiceAccount events are mostly our own writes echoing back, one per
/// object written. Enqueued after this delay, a burst of echoes costs one reconcile per
/// CR (the queue keeps the earliest pending time) instead of one per echo; a hand edit or
/// a deleted Secret is still repaired within a fraction of a second.
pub const ECHO_DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts the four reflectors. Handlers run after the cache took the change, so the
/// reconcile they trigger sees it.
pub fn start_watches(
    client: &Client,
    queue: &WorkQueue<String>,
    credentials: &CredentialSecrets,
    shared: &SharedSecrets,
    specs: &Arc<Specs>,
    shutdown: &watch::Receiver<bool>,
) -> (Caches, Vec<JoinHandle<()>>) {
    let lw = |collection: String, label_selector: Option<&str>| KubeListWatch {
        client: client.clone(),
        collection,
        label_selector: label_selector.map(str::to_string),
        field_selector: None,
    };
    let (q, creds, sh) = (queue.clone(), credentials.clone(), shared.clone());
    let (crs, cr_task) = spawn_reflector(
        lw(ECR_PULL_SECRETS.collection(None), None),
        WatcherConfig::new("ecrpullsecrets").with_metrics(metrics::runtime()),
        |cr: &EcrPullSecret| Some(cr.clone()),
        move |event| on_cr(&q, &creds, &sh, event),
        shutdown.clone(),
    );
    let (q, c, s) = (queue.clone(), crs.clone(), specs.clone());
    let (namespaces, ns_task) = spawn_reflector(
        lw(NAMESPACES.collection(None), None),
        WatcherConfig::new("namespaces").with_metrics(metrics::runtime()),
        project_namespace,
        move |event| on_namespace(&q, &c, &s, event),
        shutdown.clone(),
    );
    let (q, c) = (queue.clone(), crs.clone());
    let (secrets, secret_task) = spawn_reflector(
        lw(SECRETS.collection(None), Some(MANAGED_SELECTOR)),
        WatcherConfig::new("managed secrets").with_metrics(metrics::runtime()),
        ManagedSecret::project,
        move |event| on_managed_secret(&q, &c, event),
        shutdown.clone(),
    );
    let (q, c, s, n) = (
        queue.clone(),
        crs.clone(),
        specs.clone(),
        namespaces.clone(),
    );
    let (service_accounts, sa_task) = spawn_reflector(
        lw(SERVICE_ACCOUNTS.collection(None), None),
        WatcherConfig::new("serviceaccounts").with_metrics(metrics::runtime()),
        SaView::project,
        move |event| on_service_account(&q, &c, &s, &n, event),
        shutdown.clone(),
    );
    let caches = Caches {
        crs,
        namespaces,
        secrets,
        service_accounts,
        credentials: credentials.clone(),
        shared: shared.clone(),
        role_grants: super::role_grants::RoleGrants::none(),
    };
    (caches, vec![cr_task, ns_task, secret_task, sa_task])
}

/// A CR changed: reconcile it, and let unreferenced credential and shared-Secret watches
/// go.
fn on_cr(
    queue: &WorkQueue<String>,
    credentials: &CredentialSecrets,
    shared: &SharedSecrets,
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
    credentials.references_changed();
    shared.references_changed();
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
