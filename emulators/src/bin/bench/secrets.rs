//! Watching the operator's results from the emulator's side: which target Secrets hold a
//! valid token, whether every ServiceAccount lists them, whether every CR is Ready, and
//! when the next refresh is due.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use emulators::k8s::K8sEmulator;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::case::{cr_name, secret_name, Case, EXPIRES, OWNER, REFRESH, REGISTRY};

/// Tracks which target Secrets are valid, re-checking only those whose resourceVersion
/// moved, and only when the emulator's global resourceVersion moved (cheap polling: the
/// bench shares the CPU with the operator).
pub(crate) struct SecretWatch {
    pub case: Case,
    pub last_rv: u64,
    /// (namespace, name) -> (resourceVersion, expires-at) of valid Secrets.
    pub valid: HashMap<(String, String), (String, String)>,
}

// === impl SecretWatch ===

impl SecretWatch {
    pub(crate) fn new(case: Case) -> Self {
        SecretWatch {
            case,
            last_rv: 0,
            valid: HashMap::new(),
        }
    }

    fn refresh(&mut self, k8s: &K8sEmulator) {
        let rv = k8s.resource_version();
        if rv == self.last_rv {
            return;
        }
        // Only the Secrets changed since the last look, when the emulator's history still
        // holds them: listing 10,000 Secrets of ~9 KB every poll cost the harness more CPU
        // than the operator spent, on the CPUs the emulator needs.
        let changed = k8s.changes_since(self.last_rv).map(|changes| {
            changes
                .into_iter()
                .filter(|c| c.resource == "secrets" && c.name.starts_with("ecr-pull-"))
                .map(|c| (c.namespace.unwrap_or_default(), c.name))
                .collect::<HashSet<_>>()
        });
        self.last_rv = rv;
        let Some(changed) = changed else {
            for s in k8s.list("secrets", None) {
                self.check(&s);
            }
            return;
        };
        for (ns, name) in changed {
            match k8s.get("secrets", Some(&ns), &name) {
                Some(s) => self.check(&s),
                None => {
                    self.valid.remove(&(ns, name));
                }
            }
        }
    }

    /// Re-checks one Secret, unless its resourceVersion is one already judged valid.
    fn check(&mut self, s: &Value) {
        let meta = &s["metadata"];
        let key = (
            meta["namespace"].as_str().unwrap_or("").to_string(),
            meta["name"].as_str().unwrap_or("").to_string(),
        );
        if !key.1.starts_with("ecr-pull-") {
            return;
        }
        let srv = meta["resourceVersion"].as_str().unwrap_or("").to_string();
        if self.valid.get(&key).is_some_and(|(v, _)| *v == srv) {
            return;
        }
        if secret_valid(s) {
            let exp = meta["annotations"][EXPIRES]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.valid.insert(key, (srv, exp));
        } else {
            self.valid.remove(&key);
        }
    }

    pub(crate) fn all_valid(&mut self, k8s: &K8sEmulator) -> bool {
        self.refresh(k8s);
        self.valid.len() >= self.case.targets()
    }

    pub(crate) fn expiries(&mut self, k8s: &K8sEmulator) -> HashMap<(String, String), String> {
        self.refresh(k8s);
        self.valid
            .iter()
            .map(|(k, (_, e))| (k.clone(), e.clone()))
            .collect()
    }

    /// (some Secret holds a new token, every Secret is valid and holds a new token).
    pub(crate) fn changed(
        &mut self,
        k8s: &K8sEmulator,
        before: &HashMap<(String, String), String>,
    ) -> (bool, bool) {
        self.refresh(k8s);
        let renewed = self
            .valid
            .iter()
            .filter(|(k, (_, e))| before.get(*k).is_none_or(|b| b != e))
            .count();
        (renewed > 0, renewed >= self.case.targets())
    }
}

/// A dockerconfigjson Secret, owned by a bench CR, with a credential for the registry and
/// an expiry in the future.
fn secret_valid(s: &Value) -> bool {
    if s["type"] != "kubernetes.io/dockerconfigjson" {
        return false;
    }
    let ann = &s["metadata"]["annotations"];
    if !ann[OWNER].as_str().is_some_and(|o| o.starts_with("bench-")) {
        return false;
    }
    let future = ann[EXPIRES]
        .as_str()
        .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok())
        .is_some_and(|e| e > OffsetDateTime::now_utc());
    let config = s["data"][".dockerconfigjson"]
        .as_str()
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
    future
        && config.is_some_and(|c| {
            c["auths"][REGISTRY]["auth"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        })
}

pub(crate) fn sas_complete(k8s: &K8sEmulator, case: Case) -> bool {
    let sas = k8s.list("serviceaccounts", None);
    let mut done = 0;
    for sa in &sas {
        if !sa["metadata"]["namespace"]
            .as_str()
            .is_some_and(|n| n.starts_with("bench-"))
        {
            continue;
        }
        let names: Vec<&str> = sa["imagePullSecrets"]
            .as_array()
            .map(|l| l.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        if (0..case.crs).all(|c| names.contains(&secret_name(c).as_str())) {
            done += 1;
        }
    }
    done >= case.namespaces
}

pub(crate) fn crs_ready(k8s: &K8sEmulator, case: Case) -> bool {
    (0..case.crs).all(|c| {
        k8s.get("ecrpullsecrets", None, &cr_name(c))
            .is_some_and(|cr| {
                cr["status"]["syncedNamespaces"].as_u64() == Some(case.namespaces as u64)
                    && cr["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
    })
}

pub(crate) fn earliest_refresh_at(k8s: &K8sEmulator, case: Case) -> Option<OffsetDateTime> {
    k8s.list("secrets", None)
        .iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| (0..case.crs).any(|c| secret_name(c) == n))
        })
        .filter_map(|s| {
            s["metadata"]["annotations"][REFRESH]
                .as_str()
                .map(str::to_string)
        })
        .filter_map(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
        .min()
}
