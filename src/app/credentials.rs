//! The credentials Secrets CRs name (and the operator-wide one), each watched on its own:
//! every version is published to the AWS side's channels, so rotated keys and renewed
//! certificates apply at once, and each Secret's grant annotation says which CRs may use
//! it. A Secret is one of two kinds by what a CR names it as: `credentialsSecretRef`
//! (access keys) or `rolesAnywhere.certificateSecretRef` (`tls.crt` and `tls.key`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::credentials::{credentials_from_secret_data, SecretCredentials, SecretState};
use crate::aws::rolesanywhere::secret::{
    identity_from_secret_data, CertificateState, SecretCertificate, Unusable,
};
use crate::k8s::kind::SECRETS;
use crate::k8s::types::Secret;
use crate::k8s::{Client, ListParams};
use crate::reconcile::decide::spec::{EcrPullSecret, SecretRef};
use crate::reconcile::vocab::{split_list, GRANT_ANNOTATION};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::Store;
use crate::runtime::watch_set::WatchSet;
use crate::runtime::watcher::{spawn_reflector_into, Event, KubeListWatch, WatcherConfig};

use super::wake::enqueue_all;

/// What a credentials Secret says: its credentials (or why there are none), its
/// certificate (or why none), and the ECRPullSecrets its grant annotation names.
type Read = (SecretState, CertificateState, Vec<String>);

/// Watches the credentials Secrets (the operator-wide one and those CRs name) and
/// publishes each version into the AWS side's channel, so rotated keys apply at once.
/// Watches start on first use and stop, at [`CredentialSecrets::prune`], once no CR
/// refers to their Secret (the operator-wide one is never pruned).
#[derive(Clone)]
pub(crate) struct CredentialSecrets {
    client: Client,
    crs: Store<EcrPullSecret>,
    /// The operator-wide credentials, watched whatever the CRs say.
    operator_wide: Option<SecretRef>,
    watches: WatchSet<SecretRef, WatchedSecret>,
}

/// What one watched credentials Secret publishes.
#[derive(Clone)]
struct WatchedSecret {
    credentials: SecretCredentials,
    certificate: SecretCertificate,
    /// The CRs its grant annotation names; `None` until first read.
    grants: watch::Receiver<Option<Vec<String>>>,
}

/// What a credentials Secret's watch needs to start and to wake CRs.
#[derive(Clone)]
struct Context {
    client: Client,
    queue: WorkQueue<String>,
    crs: Store<EcrPullSecret>,
    operator_wide: Option<SecretRef>,
    shutdown: watch::Receiver<bool>,
}

/// How long a new watch gets to read its Secret once before a caller goes on without it.
const FIRST_READ: Duration = Duration::from_secs(5);

// === impl CredentialSecrets ===

impl CredentialSecrets {
    /// A change of a Secret enqueues the CRs of `crs` naming it (every CR, for the
    /// `operator_wide` one, which is watched for as long as the operator runs).
    pub(crate) fn new(
        client: Client,
        queue: WorkQueue<String>,
        crs: Store<EcrPullSecret>,
        operator_wide: Option<SecretRef>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let context = Context {
            client: client.clone(),
            queue,
            crs: crs.clone(),
            operator_wide: operator_wide.clone(),
            shutdown,
        };
        CredentialSecrets {
            client,
            crs,
            operator_wide,
            watches: WatchSet::new(move |r: &SecretRef| start_watch(&context, r)),
        }
    }

    /// The channel for a Secret, starting its watch on first use. Until the first list
    /// lands the credentials read as "not read yet" (CredentialsMissing, retried).
    pub(crate) fn get(&self, r: &SecretRef) -> SecretCredentials {
        self.watches.get(r).credentials
    }

    /// The certificate channel for a Secret, starting its watch on first use.
    pub(crate) fn certificate(&self, r: &SecretRef) -> SecretCertificate {
        self.watches.get(r).certificate
    }

    /// The ECRPullSecrets Secret `r` grants its use to; empty when missing or
    /// unreadable. A watched Secret answers from its watch (at most [`FIRST_READ`] is
    /// waited for its first read). Any other is read once, by name, and only its grant
    /// is kept: naming a Secret opens no watch and loads no credentials until a token is
    /// fetched with it, which only a granted CR gets.
    pub(crate) async fn grants(&self, r: &SecretRef) -> Vec<String> {
        let Some(WatchedSecret { mut grants, .. }) = self.watches.peek(r) else {
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
        match self.client.list::<Secret>(&collection, &params).await {
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
    pub(crate) fn watched(&self) -> usize {
        self.watches.len()
    }

    /// Drops the watches of Secrets neither operator-wide nor named by a cached CR.
    pub(crate) fn prune(&self) {
        let mut keep: HashSet<SecretRef> = self.operator_wide.iter().cloned().collect();
        keep.extend(
            self.crs
                .list()
                .iter()
                .flat_map(|cr| secret_refs(cr).into_iter().cloned().collect::<Vec<_>>()),
        );
        self.watches.retain(|r, _| keep.contains(r));
    }
}

/// Starts the watch of credentials Secret `r`: each version goes to its channel, and
/// wakes the CRs that use it.
fn start_watch(context: &Context, r: &SecretRef) -> (WatchedSecret, JoinHandle<()>) {
    let origin = format!("{}/{}", r.namespace, r.name);
    let (tx, rx) = SecretCredentials::channel(origin.clone());
    let (cert_tx, cert_rx) = SecretCertificate::channel(origin.clone());
    let (grants_tx, grants_rx) = watch::channel(None);
    let (queue, crs) = (context.queue.clone(), context.crs.clone());
    let operator_wide = context.operator_wide.as_ref() == Some(r);
    let secret = r.clone();
    let publish = move |state: SecretState, certificate: CertificateState, grants: Vec<String>| {
        // A rotated key changes the fetcher's credentials fingerprint, so the token
        // cache refetches that group at the next reconcile; a changed grant is
        // judged at that reconcile, which every CR naming the Secret gets now.
        tx.send_replace(state);
        cert_tx.send_replace(certificate);
        grants_tx.send_replace(Some(grants));
        if operator_wide {
            // The operator-wide credentials serve every CR.
            enqueue_all(&queue, &crs);
        } else {
            enqueue_naming(&queue, &crs, &secret);
        }
    };
    let missing = format!("Secret {origin} not found");
    // The projection is what the Secret says: its credentials, its certificate (parsed
    // and matched with its key once per version, not per session) and its grant.
    let read = |s: &Secret| -> Option<Read> {
        let grants = split_list(s.metadata.annotations.get(GRANT_ANNOTATION));
        let certificate = identity_from_secret_data(&s.data)
            .map(Arc::new)
            .map_err(Unusable::Invalid);
        Some((
            Some(credentials_from_secret_data(&s.data)),
            Some(certificate),
            grants,
        ))
    };
    let store: Store<Read> = Store::new();
    let listed = store.clone();
    let (_, task) = spawn_reflector_into(
        store,
        KubeListWatch {
            client: context.client.clone(),
            collection: SECRETS.collection(Some(&r.namespace)),
            label_selector: None,
            field_selector: Some(format!("metadata.name={}", r.name)),
        },
        WatcherConfig::new(format!("credentials secret {origin}")),
        read,
        move |event: Event<Secret>| {
            let key = event.keys().into_iter().next();
            match (&event, key.and_then(|k| listed.get(&k))) {
                (Event::Applied(_) | Event::Restarted(_), Some(read)) => {
                    let (state, certificate, grants) = (*read).clone();
                    publish(state, certificate, grants)
                }
                _ => publish(
                    Some(Err(missing.clone())),
                    Some(Err(Unusable::Missing(missing.clone()))),
                    Vec::new(),
                ),
            }
        },
        context.shutdown.clone(),
    );
    let watched = WatchedSecret {
        credentials: rx,
        certificate: cert_rx,
        grants: grants_rx,
    };
    (watched, task)
}

/// Enqueues the CRs whose `credentialsSecretRef` or certificate Secret is `secret`.
fn enqueue_naming(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>, secret: &SecretRef) {
    for cr in crs.list() {
        if secret_refs(&cr).contains(&secret) {
            if let Some(name) = &cr.metadata.name {
                queue.add(name.clone());
            }
        }
    }
}

/// The Secrets a CR signs with: its credentials Secret and its certificate Secret.
fn secret_refs(cr: &EcrPullSecret) -> Vec<&SecretRef> {
    let Some(aws) = cr.spec.aws.as_ref() else {
        return Vec::new();
    };
    let certificate = aws
        .roles_anywhere
        .as_ref()
        .map(|ra| &ra.certificate_secret_ref);
    aws.credentials_secret_ref
        .iter()
        .chain(certificate)
        .collect()
}
