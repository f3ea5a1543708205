//! The watch caches the reconciler reads, and their view as the reconciler's
//! [`ObservedState`].

use std::sync::Arc;

use crate::k8s::types::{Secret, ServiceAccount};
use crate::reconcile::decide::select::NamespaceView;
use crate::reconcile::decide::spec::EcrPullSecret;
use crate::reconcile::decide::state::{ManagedSecret, SaView};
use crate::reconcile::execute::writes::WriteThrough;
use crate::reconcile::reconciler::{ObservedState, Reads, Wants};
use crate::runtime::store::{ObjectKey, Store};

use super::credentials::CredentialSecrets;
use super::role_grants::RoleGrants;
use super::shared::SharedSecrets;

/// The watch caches the reconciler reads.
#[derive(Clone)]
pub(crate) struct Caches {
    pub crs: Store<EcrPullSecret>,
    pub namespaces: Store<NamespaceView>,
    pub secrets: Store<ManagedSecret>,
    pub service_accounts: Store<SaView>,
    /// The credentials Secrets CRs name, watched one by one.
    pub credentials: CredentialSecrets,
    /// The shared pull secrets merge CRs write into, watched by name.
    pub shared: SharedSecrets,
    /// Which CRs may assume which IAM role.
    pub role_grants: RoleGrants,
}

// === impl Caches ===

impl Caches {
    /// The caches around `crs`, the others empty until their reflectors fill them
    /// ([`super::routing::start_watches`]). Every part exists before any watch starts,
    /// so no handler ever finds one missing.
    pub(crate) fn new(
        crs: Store<EcrPullSecret>,
        credentials: CredentialSecrets,
        shared: SharedSecrets,
        role_grants: RoleGrants,
    ) -> Self {
        Caches {
            crs,
            namespaces: Store::new(),
            secrets: Store::new(),
            service_accounts: Store::new(),
            credentials,
            shared,
            role_grants,
        }
    }

    /// Stops the watches started on demand that no cached CR refers to any more.
    pub(crate) fn prune_watches(&self) {
        self.credentials.prune();
        self.shared.prune();
    }

    /// Resolves once every cache has its first full list.
    pub(crate) async fn synced(&self) {
        self.crs.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.secrets.wait_synced().await;
        self.service_accounts.wait_synced().await;
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.crs.is_synced()
            && self.namespaces.is_synced()
            && self.secrets.is_synced()
            && self.service_accounts.is_synced()
    }

    /// Every CR name, to enqueue after a change that may concern any of them.
    pub(crate) fn cr_names(&self) -> Vec<String> {
        self.crs
            .keys()
            .into_iter()
            .map(|k| k.name.to_string())
            .collect()
    }
}

impl ObservedState for Caches {
    fn cr(&self, name: &str) -> Option<EcrPullSecret> {
        self.crs
            .get(&ObjectKey::cluster(name))
            .map(|c| (*c).clone())
    }
    fn crs(&self) -> Vec<Arc<EcrPullSecret>> {
        self.crs.list()
    }
    async fn read(&self, owner: &str, wants: Wants<'_>) -> Reads {
        let mut secrets = self.secrets.list();
        secrets.retain(|s| *s.owner == *owner || Some(&*s.name) == wants.secret_name);
        let shared = match wants.shared {
            Some(name) => self.shared.named(name).await,
            None => None,
        };
        // Read after the listing above: a Secret it lists may hold the owner's hosts.
        let holding = self.shared.holding(owner);
        let mut grantees = Vec::with_capacity(wants.grants_of.len());
        for secret in wants.grants_of {
            grantees.push(self.credentials.grants(secret).await);
        }
        let mut roles_granted = Vec::with_capacity(wants.roles.len());
        for role in wants.roles {
            roles_granted.push(self.role_grants.granted(owner, role).await);
        }
        Reads {
            namespaces: self.namespaces.list(),
            secrets,
            service_accounts: self.service_accounts.list(),
            shared,
            holding,
            grantees,
            roles_granted,
        }
    }
    fn cr_written(&self, cr: EcrPullSecret) {
        if let Some(name) = cr.metadata.name.clone() {
            self.crs.write_through(ObjectKey::cluster(&name), Some(cr));
        }
    }
}

/// Our writes' answers go in front of the watch caches: the next plan starts from them.
impl WriteThrough for Caches {
    fn secret_written(&self, namespace: &str, name: &str, projection: Option<ManagedSecret>) {
        self.secrets
            .write_through(ObjectKey::namespaced(namespace, name), projection);
    }
    fn secret_deleted(&self, namespace: &str, name: &str, version: &str) {
        self.secrets
            .delete_through(ObjectKey::namespaced(namespace, name), version);
    }
    fn service_account_written(&self, sa: &ServiceAccount) {
        let meta = &sa.metadata;
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            let key = ObjectKey::namespaced(ns.as_str(), name.as_str());
            self.service_accounts
                .write_through(key, SaView::project(sa));
        }
    }
    fn shared_secret_written(&self, secret: &Secret) {
        self.shared.written(secret);
    }
    fn shared_secret_deleted(&self, namespace: &str, name: &str, version: &str) {
        self.shared.deleted(namespace, name, version);
    }
    fn service_account(&self, namespace: &str, name: &str) -> Option<SaView> {
        self.service_accounts
            .get(&ObjectKey::namespaced(namespace, name))
            .map(|s| (*s).clone())
    }
}
