//! Which namespaces a CR targets, and which ServiceAccounts in them.

use std::collections::BTreeMap;

use super::spec::{LabelSelector, ValidSpec};

/// A namespace as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Being deleted: never a target for new writes.
    pub terminating: bool,
}

/// The outcome of namespace selection.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Namespaces that exist and are targeted, sorted.
    pub namespaces: Vec<String>,
    /// Names listed explicitly (no glob) that do not exist (or are terminating).
    pub missing: Vec<String>,
}

/// Applies `namespaces` (names and globs), `namespaceSelector` and `excludeNamespaces`.
pub fn target_namespaces<'a>(
    spec: &ValidSpec,
    namespaces: impl IntoIterator<Item = &'a NamespaceView>,
) -> Targets {
    let mut out = Targets::default();
    let mut seen_explicit = Vec::new();
    for ns in namespaces {
        let by_list = spec.namespaces.iter().any(|p| glob_match(p, &ns.name));
        let by_selector = spec
            .namespace_selector
            .as_ref()
            .is_some_and(|sel| selector_matches(sel, &ns.labels));
        if spec.namespaces.iter().any(|p| p == &ns.name) && !ns.terminating {
            seen_explicit.push(ns.name.as_str());
        }
        let excluded = spec
            .exclude_namespaces
            .iter()
            .any(|p| glob_match(p, &ns.name));
        if (by_list || by_selector) && !excluded && !ns.terminating {
            out.namespaces.push(ns.name.clone());
        }
    }
    out.namespaces.sort();
    for name in &spec.namespaces {
        let literal = !name.contains(['*', '?']);
        let excluded = spec.exclude_namespaces.iter().any(|p| glob_match(p, name));
        if literal && !excluded && !seen_explicit.contains(&name.as_str()) {
            out.missing.push(name.clone());
        }
    }
    out.missing.sort();
    out.missing.dedup();
    out
}

/// Shell-style glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// `metav1.LabelSelector` semantics: every clause must hold; `{}` matches everything.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|req| {
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| req.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Rejects operators and value lists the API server would reject.
pub fn check_selector(sel: &LabelSelector) -> Result<(), String> {
    for req in &sel.match_expressions {
        match req.operator.as_str() {
            "In" | "NotIn" if req.values.is_empty() => {
                return Err(format!(
                    "operator {} on key {} needs at least one value",
                    req.operator,
                    crate::reconcile::spec::shown(&req.key)
                ))
            }
            "Exists" | "DoesNotExist" if !req.values.is_empty() => {
                return Err(format!(
                    "operator {} on key {} takes no values",
                    req.operator,
                    crate::reconcile::spec::shown(&req.key)
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "unknown operator {} (In, NotIn, Exists, DoesNotExist)",
                    crate::reconcile::spec::shown(other)
                ))
            }
        }
    }
    Ok(())
}

/// Whether the ServiceAccount `name` is selected (`None` = every ServiceAccount).
pub fn service_account_selected(selected: &Option<Vec<String>>, name: &str) -> bool {
    match selected {
        None => true,
        Some(list) => list.iter().any(|s| s == name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::spec::{LabelSelectorRequirement, Spec};

    fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceView {
        NamespaceView {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            terminating: false,
        }
    }

    fn valid(json: serde_json::Value) -> ValidSpec {
        serde_json::from_value::<Spec>(json)
            .unwrap()
            .validate(&[])
            .unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*-prod-*", "x-prod-y"));
        assert!(!glob_match("team-*", "teamx"));
        assert!(glob_match("exact", "exact"));
    }

    #[test]
    fn list_selector_and_excludes_combine() {
        let spec = valid(serde_json::json!({
            "secretName": "s",
            "namespaces": ["a", "gone", "team-*"],
            "namespaceSelector": {"matchLabels": {"ecr": "yes"}},
            "excludeNamespaces": ["team-secret"]
        }));
        let all = [
            ns("a", &[]),
            ns("b", &[("ecr", "yes")]),
            ns("c", &[("ecr", "no")]),
            ns("team-x", &[]),
            ns("team-secret", &[("ecr", "yes")]),
        ];
        let t = target_namespaces(&spec, &all);
        assert_eq!(t.namespaces, vec!["a", "b", "team-x"]);
        assert_eq!(t.missing, vec!["gone"]);
    }

    #[test]
    fn empty_selector_matches_every_namespace_but_terminating_ones() {
        let spec = valid(serde_json::json!({"secretName": "s", "namespaceSelector": {}}));
        let mut dying = ns("dying", &[]);
        dying.terminating = true;
        let all = [ns("a", &[]), ns("b", &[]), dying];
        assert_eq!(target_namespaces(&spec, &all).namespaces, vec!["a", "b"]);
    }

    #[test]
    fn match_expressions() {
        let sel = LabelSelector {
            match_labels: Default::default(),
            match_expressions: vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: vec!["prod".into(), "stage".into()],
                },
                LabelSelectorRequirement {
                    key: "skip".into(),
                    operator: "DoesNotExist".into(),
                    values: vec![],
                },
            ],
        };
        assert!(selector_matches(&sel, &ns("x", &[("env", "prod")]).labels));
        assert!(!selector_matches(&sel, &ns("x", &[("env", "dev")]).labels));
        assert!(!selector_matches(
            &sel,
            &ns("x", &[("env", "prod"), ("skip", "")]).labels
        ));
        assert!(check_selector(&sel).is_ok());
    }
}
