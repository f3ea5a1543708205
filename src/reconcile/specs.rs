//! What the operator remembers of each CR's selection, shared by the reconciler and the
//! event routing: the validated spec (patterns compiled once per spec, not once per
//! event), and the namespaces each CR's last plan touched. A namespace or ServiceAccount
//! event then wakes only the CRs it can concern, instead of every CR.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::decide::select::{self, NamespaceView};
use super::decide::spec::{EcrPullSecret, Spec};
use super::decide::spec_error::SpecError;
use super::decide::step::Other;
use super::decide::validate::{SpecPolicy, ValidSpec};

/// Validated specs by CR name, and the namespaces each CR's last plan touched.
#[derive(Debug)]
pub(crate) struct Specs {
    policy: SpecPolicy,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The spec last validated per CR, and the result.
    valid: HashMap<String, (Spec, Result<Arc<ValidSpec>, SpecError>)>,
    /// Namespace -> CRs whose last plan targeted it or held a Secret there. Names are
    /// shared (`Arc<str>`): thousands of namespaces point at a handful of CRs, so a
    /// short Vec per namespace costs far less than a set.
    by_namespace: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// CR -> the namespaces it is indexed under, to replace them on the next plan.
    touched: HashMap<Arc<str>, Vec<Arc<str>>>,
}

// === impl Specs ===

impl Specs {
    pub(crate) fn new(policy: SpecPolicy) -> Self {
        Specs {
            policy,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The validated `spec` of CR `name`, from memory while the spec is unchanged.
    pub(crate) fn valid(&self, name: &str, spec: &Spec) -> Result<Arc<ValidSpec>, SpecError> {
        let mut inner = self.lock();
        if let Some((seen, result)) = inner.valid.get(name) {
            if seen == spec {
                return result.clone();
            }
        }
        let result = spec.validate(&self.policy).map(Arc::new);
        inner
            .valid
            .insert(name.to_string(), (spec.clone(), result.clone()));
        result
    }

    /// Every other live CR of `crs` (not `me`, not being deleted) whose spec validates:
    /// the merge rivals and ServiceAccount-entry users a plan weighs.
    pub(crate) fn valid_others(&self, me: &str, crs: &[Arc<EcrPullSecret>]) -> Vec<Other> {
        let mut out = Vec::new();
        for cr in crs {
            let Some(other) = cr.metadata.name.as_deref() else {
                continue;
            };
            if other == me || cr.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Ok(spec) = self.valid(other, &cr.spec) {
                out.push(Other {
                    cr: cr.clone(),
                    spec,
                });
            }
        }
        out
    }

    /// Records the namespaces CR `name`'s last plan touched (targets, and where it holds
    /// Secrets it may delete).
    pub(crate) fn touched(&self, name: &str, namespaces: impl IntoIterator<Item = String>) {
        let mut inner = self.lock();
        let cr: Arc<str> = inner
            .touched
            .get_key_value(name)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(name));
        let mut fresh: Vec<Arc<str>> = Vec::new();
        for ns in namespaces {
            let key: Arc<str> = match inner.by_namespace.get_key_value(ns.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(ns.as_str()),
            };
            fresh.push(key);
        }
        fresh.sort();
        fresh.dedup();
        let old = inner
            .touched
            .insert(cr.clone(), fresh.clone())
            .unwrap_or_default();
        for ns in old {
            if let Some(crs) = inner.by_namespace.get_mut(&ns) {
                crs.retain(|c| *c != cr);
                if crs.is_empty() {
                    inner.by_namespace.remove(&ns);
                }
            }
        }
        for ns in fresh {
            let crs = inner.by_namespace.entry(ns).or_default();
            if !crs.contains(&cr) {
                crs.push(cr.clone());
                crs.shrink_to_fit();
            }
        }
    }

    /// The CR is gone: forget its spec and its namespaces.
    pub(crate) fn forget(&self, name: &str) {
        self.touched(name, std::iter::empty());
        let mut inner = self.lock();
        inner.valid.remove(name);
        inner.touched.remove(name);
    }

    /// The CRs a change of namespace `ns` can concern: those whose last plan touched it,
    /// and those whose spec selects it now (a new namespace, or new labels).
    pub(crate) fn concerned<'a>(
        &self,
        ns: &NamespaceView,
        crs: impl IntoIterator<Item = (&'a str, &'a Spec)>,
    ) -> Vec<String> {
        let mut out: HashSet<String> = self
            .lock()
            .by_namespace
            .get(ns.name.as_str())
            .map(|crs| crs.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        for (name, spec) in crs {
            if out.contains(name) {
                continue;
            }
            // An invalid spec's status does not depend on namespaces.
            if let Ok(valid) = self.valid(name, spec) {
                if selects(&valid, ns) {
                    out.insert(name.to_string());
                }
            }
        }
        out.into_iter().collect()
    }

    /// The CRs whose last plan touched namespace `ns`.
    pub(crate) fn touching(&self, ns: &str) -> Vec<String> {
        self.lock()
            .by_namespace
            .get(ns)
            .map(|crs| crs.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default()
    }

    /// Namespaces indexed, for tests and memory figures.
    #[cfg(test)]
    pub(crate) fn indexed_namespaces(&self) -> usize {
        self.lock().by_namespace.len()
    }
}

/// Whether `spec` selects `ns` (or lists it by name, terminating or not: a listed
/// namespace's coming and going changes the CR's `missing` list).
fn selects(spec: &ValidSpec, ns: &NamespaceView) -> bool {
    spec.namespaces.lists(&ns.name)
        || select::target_namespaces(spec, std::iter::once(ns))
            .namespaces
            .contains(&ns.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceView {
        NamespaceView {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
                .collect(),
            terminating: false,
        }
    }

    #[test]
    fn a_namespace_concerns_the_crs_that_select_it_or_touched_it_only() {
        let specs = Specs::new(SpecPolicy::default());
        let crs = [
            (
                "teams".to_string(),
                spec(serde_json::json!({"secretName": "s", "namespaces": ["team-*"]})),
            ),
            (
                "prod".to_string(),
                spec(serde_json::json!({"secretName": "s",
                "namespaceSelector": {"matchLabels": {"env": "prod"}}})),
            ),
            (
                "other".to_string(),
                spec(serde_json::json!({"secretName": "s", "namespaces": ["x"]})),
            ),
        ];
        let crs: Vec<(&str, &Spec)> = crs.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let mut got = specs.concerned(&ns("team-a", &[]), crs.clone());
        got.sort();
        assert_eq!(got, ["teams"]);
        assert_eq!(
            specs.concerned(&ns("b", &[("env", "prod")]), crs.clone()),
            ["prod"]
        );
        assert!(specs.concerned(&ns("b", &[]), crs.clone()).is_empty());
        // A namespace "prod" left by relabelling still concerns it: its last plan did.
        specs.touched("prod", ["b".to_string()]);
        assert_eq!(specs.concerned(&ns("b", &[]), crs.clone()), ["prod"]);
        specs.touched("prod", Vec::new());
        assert!(specs.concerned(&ns("b", &[]), crs).is_empty());
        assert_eq!(specs.indexed_namespaces(), 0);
    }

    #[test]
    fn an_unchanged_spec_is_validated_once_and_a_forgotten_cr_leaves_nothing() {
        let specs = Specs::new(SpecPolicy::default());
        let s = spec(serde_json::json!({"secretName": "s", "namespaces": ["a"]}));
        let a = specs.valid("cr", &s).unwrap();
        let b = specs.valid("cr", &s).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "validated again");
        specs.touched("cr", ["a".to_string(), "b".to_string()]);
        assert_eq!(specs.touching("a"), ["cr"]);
        specs.forget("cr");
        assert!(specs.touching("a").is_empty());
        assert_eq!(specs.indexed_namespaces(), 0);
    }
}
