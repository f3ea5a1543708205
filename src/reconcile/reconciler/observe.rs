//! The first stage of a reconcile: read, once, everything the decision needs. The CR
//! and its validated spec, the other CRs, then in one call to the caches the cluster,
//! the shared Secrets of a merge and the grants of the CR's identity. Nothing is written
//! and nothing decided here beyond what to read.

use std::sync::Arc;

use super::super::decide::grants::Grants;
use super::super::decide::spec::SecretPolicy;
use super::super::decide::step::{Cluster, Observed, Present};
use super::super::specs::Specs;
use super::super::vocab::Owner;
use super::{ObservedState, Wants};

/// Reads what a reconcile needs from the caches.
pub(super) struct Observer<S> {
    pub(super) state: S,
    /// Validated specs, memoized per CR.
    pub(super) specs: Arc<Specs>,
    /// Credentials Secrets in the operator's namespace need no grant.
    pub(super) operator_namespace: Option<String>,
}

impl<S: ObservedState> Observer<S> {
    /// What CR `name` and its plan read, as the caches hold it now. A CR being deleted
    /// reads only the Secrets it owns; only a live CR's valid spec reads grants.
    pub(super) async fn observe_cr(&self, name: &str) -> Observed {
        let cr = self.state.cr(name);
        let spec = cr.as_ref().map(|cr| self.specs.valid(name, &cr.spec));
        // Only a CR still in the cache weighs the others (rivals, shared entries).
        let others = match &cr {
            Some(_) => self.specs.valid_others(name, &self.state.crs()),
            None => Vec::new(),
        };
        let live = match (&cr, &spec) {
            (Some(cr), Some(Ok(spec))) if cr.metadata.deletion_timestamp.is_none() => {
                Some(spec.clone())
            }
            _ => None,
        };
        let signs_with = live
            .as_ref()
            .map(|s| s.aws.signs_with())
            .unwrap_or_default();
        let assumes = live.as_ref().map(|s| s.aws.assumes()).unwrap_or_default();
        let ours = |namespace: &str| self.operator_namespace.as_deref() == Some(namespace);
        let merging = cr
            .as_ref()
            .filter(|cr| cr.spec.secret_policy == Some(SecretPolicy::Merge));
        let wants = Wants {
            secret_name: live.as_ref().map(|s| s.secret_name.as_str()),
            shared: merging.map(|cr| cr.spec.secret_name.as_str()),
            grants_of: (signs_with.iter().map(|(_, s)| *s))
                .filter(|s| !ours(&s.namespace))
                .collect(),
            roles: assumes.iter().map(|(_, role)| *role).collect(),
        };
        let reads = self.state.read(name, wants).await;
        let (Some(cr), Some(spec)) = (cr, spec) else {
            let kept = reads.secrets.len();
            let name = name.to_string();
            return Observed::Gone { name, kept };
        };
        let mut grantees = reads.grantees.into_iter();
        let grants = Grants {
            secrets: (signs_with.into_iter())
                .map(|(field, s)| {
                    let read = (!ours(&s.namespace)).then(|| grantees.next().unwrap_or_default());
                    (field, s.clone(), read)
                })
                .collect(),
            roles: (assumes.into_iter().zip(reads.roles_granted))
                .map(|((field, role), granted)| (field, role.to_string(), granted))
                .collect(),
        };
        let cluster = Cluster {
            namespaces: reads.namespaces,
            secrets: reads.secrets,
            service_accounts: reads.service_accounts,
            shared: reads.shared,
            holding: reads.holding,
            others,
        };
        let owner = Owner {
            name: name.to_string(),
            uid: cr.metadata.uid.clone().unwrap_or_default(),
        };
        Observed::Present(Box::new(Present {
            cr,
            owner,
            spec,
            cluster,
            grants,
        }))
    }
}
