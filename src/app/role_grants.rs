//! Role grants: which ECRPullSecrets may assume which IAM role. A CR author names a
//! role, but only a cluster admin may say who uses it: the grants live in a ConfigMap in
//! the operator's namespace, which a CR author cannot write and the operator's RBAC
//! only reads. Each key is an ECRPullSecret's name (a ConfigMap key admits every CR
//! name), its value the role ARNs that CR may name, comma- or newline-separated. The
//! ConfigMap is watched: a grant or a revocation enqueues the CRs naming a role, and
//! applies at their next reconcile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::k8s::kind::CONFIG_MAPS;
use crate::k8s::types::ConfigMap;
use crate::k8s::Client;
use crate::reconcile::decide::spec::EcrPullSecret;
use crate::reconcile::vocab::ROLE_GRANTS_CONFIGMAP;
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watcher::{spawn_reflector, Event, KubeListWatch, WatcherConfig};

/// How long a reconcile waits for the first list of the grants before it goes on
/// without them (and refuses the role, to be asked again).
const FIRST_READ: Duration = Duration::from_secs(5);

/// The roles granted, by CR name.
type Grants = BTreeMap<String, Vec<String>>;

/// The watched role grants.
#[derive(Clone)]
pub(crate) struct RoleGrants {
    source: Option<Arc<Source>>,
}

struct Source {
    namespace: String,
    store: Store<Grants>,
}

// === impl RoleGrants ===

impl RoleGrants {
    /// No operator namespace is known: no role is granted to anyone.
    pub(crate) fn none() -> Self {
        RoleGrants { source: None }
    }

    /// Watches the grants ConfigMap in `namespace`; a change enqueues the CRs of `crs`
    /// that name a role.
    pub(crate) fn watch(
        client: &Client,
        namespace: &str,
        queue: WorkQueue<String>,
        crs: Store<EcrPullSecret>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (store, _task) = spawn_reflector(
            KubeListWatch {
                client: client.clone(),
                collection: CONFIG_MAPS.collection(Some(namespace)),
                label_selector: None,
                field_selector: Some(format!("metadata.name={ROLE_GRANTS_CONFIGMAP}")),
            },
            WatcherConfig::new("role grants"),
            |cm: &ConfigMap| Some(parse(&cm.data)),
            move |_: Event<ConfigMap>| {
                for cr in crs.list() {
                    let names_role = cr
                        .spec
                        .aws
                        .as_ref()
                        .is_some_and(|a| a.role_arn.is_some() || a.roles_anywhere.is_some());
                    if let (true, Some(name)) = (names_role, &cr.metadata.name) {
                        queue.add(name.clone());
                    }
                }
            },
            shutdown,
        );
        RoleGrants {
            source: Some(Arc::new(Source {
                namespace: namespace.to_string(),
                store,
            })),
        }
    }

    /// Whether CR `cr` may assume `role`. Missing, unreadable or not yet listed: no.
    pub(crate) async fn granted(&self, cr: &str, role: &str) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let _ = tokio::time::timeout(FIRST_READ, source.store.wait_synced()).await;
        let key = ObjectKey::namespaced(&source.namespace, ROLE_GRANTS_CONFIGMAP);
        source.store.get(&key).is_some_and(|grants| {
            grants
                .get(cr)
                .is_some_and(|roles| roles.iter().any(|r| r == role))
        })
    }
}

/// Each key a CR name, each value its role ARNs (comma- or newline-separated).
fn parse(data: &BTreeMap<String, String>) -> Grants {
    data.iter()
        .map(|(cr, roles)| {
            let roles = roles
                .split([',', '\n'])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            (cr.clone(), roles)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_a_cr_and_its_value_lists_roles() {
        let data = BTreeMap::from([
            (
                "a".to_string(),
                "arn:aws:iam::1:role/x, arn:aws:iam::1:role/y\n".to_string(),
            ),
            ("b".to_string(), "\n arn:aws:iam::2:role/z \n".to_string()),
        ]);
        let g = parse(&data);
        assert_eq!(g["a"], ["arn:aws:iam::1:role/x", "arn:aws:iam::1:role/y"]);
        assert_eq!(g["b"], ["arn:aws:iam::2:role/z"]);
    }
}
