//! What a running operator shows of itself: whether it has caught up and gone idle, what
//! its caches hold, how many token groups, credential providers and watches it keeps. An
//! embedder's health checks and the black-box test harness read these; every other part
//! of the operator stays inside the crate. Each answer is a read of one moment.
//! [`Running::reconcile`] is the one action: a reconcile now, as a worker would run it.

use std::collections::BTreeMap;
use std::fmt;

use crate::reconcile::reconciler::ReconcileError;
use crate::runtime::store::ObjectKey;

use super::Running;

/// A reconcile that did not finish: the reason the CR's status files it under, and what
/// went wrong (never a credential).
#[derive(Debug)]
pub struct ReconcileFailed(ReconcileError);

// === impl ReconcileFailed ===

impl ReconcileFailed {
    /// The status reason, as the CR's Ready condition and the metrics spell it.
    pub fn reason(&self) -> &'static str {
        self.0.reason().as_str()
    }
}

impl fmt::Display for ReconcileFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ReconcileFailed {}

// === impl Running ===

impl Running {
    /// `true` once every watch cache has had its first full list.
    pub fn is_synced(&self) -> bool {
        self.caches.is_synced()
    }

    /// Resolves once every watch cache has had its first full list.
    pub async fn synced(&self) {
        self.caches.synced().await
    }

    /// Synced, with no CR queued or being reconciled: every event seen so far is handled.
    pub fn is_idle(&self) -> bool {
        self.caches.is_synced() && self.queue.is_empty() && self.queue.processing_len() == 0
    }

    /// Reconciles the CR `name` once, now, as a controller worker would.
    pub async fn reconcile(&self, name: &str) -> Result<(), ReconcileFailed> {
        self.reconciler
            .reconcile(name)
            .await
            .map(|_| ())
            .map_err(ReconcileFailed)
    }

    /// Whether the CR cache holds the ECRPullSecret `name`.
    pub fn has_cr(&self, name: &str) -> bool {
        self.caches.crs.get(&ObjectKey::cluster(name)).is_some()
    }

    /// The labels of namespace `name` as the cache holds them (the API server's
    /// `kubernetes.io/metadata.name` left out: it always equals the name); `None` while
    /// the cache does not hold it.
    pub fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let ns = self.caches.namespaces.get(&ObjectKey::cluster(name))?;
        Some(
            ns.labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Whether the role grants the operator has read let the CR `cr` assume `role`.
    pub async fn role_granted(&self, cr: &str, role: &str) -> bool {
        self.caches.role_grants.granted(cr, role).await
    }

    /// Token groups cached: one per set of credentials, region and registry kind in use.
    pub fn token_groups(&self) -> usize {
        self.reconciler.tokens().len()
    }

    /// Credential providers kept: one per AWS identity in use.
    pub fn credential_providers(&self) -> usize {
        self.reconciler.tokens().fetcher().providers()
    }

    /// Credentials Secrets (named by CRs' `credentialsSecretRef`) watched now.
    pub fn watched_credential_secrets(&self) -> usize {
        self.caches.credentials.watched()
    }
}
