//! Reads rbac.yaml and answers "would the operator's ServiceAccount be allowed this
//! request?", so emulator tests can check every request they saw against the shipped
//! RBAC. Include it from a test with
//! `#[path = "manifests/rbac_rules.rs"] mod rbac_rules;`.
//!
//! It reads our own file's style (flow lists, one key per line) and panics on anything
//! it does not understand rather than guess. Bindings are not modelled: every Role and
//! ClusterRole in rbac.yaml is bound to the operator's ServiceAccount, which
//! tests/manifests/check_invariants.py verifies on the rendered install.
#![allow(dead_code)]

/// One rule, with where it applies (`None`: a ClusterRole's, everywhere).
#[derive(Debug, Default, Clone)]
pub struct ScopedRule {
    pub namespace: Option<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub verbs: Vec<String>,
}

#[derive(Debug)]
pub struct Rbac {
    pub rules: Vec<ScopedRule>,
}

impl Rbac {
    /// rbac.yaml at the repository root.
    pub fn load() -> Rbac {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Rbac::parse(&text)
    }

    pub fn parse(yaml: &str) -> Rbac {
        let mut rules = Vec::new();
        for doc in split_documents(yaml) {
            let kind = doc
                .iter()
                .find_map(|l| l.strip_prefix("kind: "))
                .map(str::trim);
            let namespace = match kind {
                Some("ClusterRole") => None,
                Some("Role") => Some(
                    doc.iter()
                        .find_map(|l| l.strip_prefix("  namespace: "))
                        .map(|s| s.trim().to_string())
                        .expect("a Role without metadata.namespace"),
                ),
                _ => continue,
            };
            let mut current: Option<ScopedRule> = None;
            let mut in_rules = false;
            for line in &doc {
                if line.starts_with("rules:") {
                    in_rules = true;
                    continue;
                }
                if !in_rules || line.trim().is_empty() || line.trim_start().starts_with('#') {
                    continue;
                }
                let t = line.trim();
                let (item_start, t) = match t.strip_prefix("- ") {
                    Some(rest) => (true, rest),
                    None => (false, t),
                };
                if item_start {
                    rules.extend(current.take());
                    current = Some(ScopedRule {
                        namespace: namespace.clone(),
                        ..ScopedRule::default()
                    });
                }
                let rule = current
                    .as_mut()
                    .unwrap_or_else(|| panic!("rbac.yaml: {line:?} outside a rule"));
                let (key, value) = t
                    .split_once(':')
                    .unwrap_or_else(|| panic!("rbac.yaml: cannot read {line:?}"));
                let list = flow_list(value)
                    .unwrap_or_else(|| panic!("rbac.yaml: {key} is not a flow list: {line:?}"));
                match key {
                    "apiGroups" => rule.api_groups = list,
                    "resources" => rule.resources = list,
                    "resourceNames" => rule.resource_names = list,
                    "verbs" => rule.verbs = list,
                    other => panic!("rbac.yaml: unknown rule key {other:?}"),
                }
            }
            rules.extend(current.take());
        }
        assert!(!rules.is_empty(), "rbac.yaml: no rules found");
        for r in &rules {
            assert!(
                !r.verbs.is_empty() && !r.resources.is_empty() && !r.api_groups.is_empty(),
                "rbac.yaml: incomplete rule {r:?}"
            );
        }
        Rbac { rules }
    }

    /// Whether a request is allowed. `resource` may carry a subresource
    /// (`ecrpullsecrets/status`); `name` is the object's name (None for list, watch and
    /// create, which `resourceNames` can never allow).
    pub fn allows(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        self.rules.iter().any(|r| {
            let scope_ok = match (&r.namespace, namespace) {
                (None, _) => true,
                (Some(rns), Some(ns)) => rns == ns,
                (Some(_), None) => false,
            };
            let name_ok = r.resource_names.is_empty()
                || name.is_some_and(|n| r.resource_names.iter().any(|x| x == n));
            scope_ok
                && name_ok
                && r.verbs.iter().any(|v| v == verb)
                && r.api_groups.iter().any(|g| g == group)
                && r.resources.iter().any(|x| x == resource)
        })
    }
}

fn split_documents(yaml: &str) -> Vec<Vec<&str>> {
    let mut docs = vec![Vec::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            docs.push(Vec::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push(line);
        }
    }
    docs
}

/// `["a", "b"]` -> `[a, b]`; `[""]` -> `[""]` (the core group).
fn flow_list(value: &str) -> Option<Vec<String>> {
    let inner = value.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(
        inner
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_matches('"').to_string())
            .collect(),
    )
}
