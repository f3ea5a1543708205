//! Which namespaces a CR targets, from the patterns and selector that `validate`
//! compiled (see `patterns` for why matching is linear). Which ServiceAccounts in them
//! get our entry is the planner's rule (`plan::service_account_selected`).

use std::collections::HashSet;
use std::sync::Arc;

use super::spec::LabelSelector;
use super::validate::ValidSpec;

/// A namespace as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceView {
    pub name: String,
    /// Its labels but `kubernetes.io/metadata.name`, which [`NamespaceView::label`]
    /// answers from the name.
    pub labels: Labels,
    /// Being deleted: never a target for new writes.
    pub terminating: bool,
}

/// A namespace's labels, sorted by key in one allocation: a namespace has a label or
/// two, and a map's node (368 bytes for one label) was the largest share of a cached
/// namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Labels(Box<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// The labels, sorted by key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }
}

impl FromIterator<(Arc<str>, Arc<str>)> for Labels {
    /// Sorted by key; of duplicate keys the last wins, as in a map.
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Arc<str>)>>(iter: I) -> Self {
        let mut pairs: Vec<(Arc<str>, Arc<str>)> = iter.into_iter().collect();
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(pairs.into_boxed_slice())
    }
}

impl NamespaceView {
    /// The value of label `key`, the API server's name label included.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        if key == crate::reconcile::vocab::NAME_LABEL {
            return Some(&self.name);
        }
        self.labels.get(key)
    }
}

/// The outcome of namespace selection.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Namespaces that exist and are targeted, sorted.
    pub namespaces: Vec<String>,
    /// Names listed explicitly (no glob) that do not exist (or are terminating).
    pub missing: Vec<String>,
}

/// Applies `namespaces` (names and globs), `namespaceSelector` and `excludeNamespaces`.
pub(crate) fn target_namespaces<'a>(
    spec: &ValidSpec,
    namespaces: impl IntoIterator<Item = &'a NamespaceView>,
) -> Targets {
    let mut out = Targets::default();
    let mut seen_explicit: HashSet<&str> = HashSet::new();
    for ns in namespaces {
        if ns.terminating {
            continue;
        }
        if spec.namespaces.lists(&ns.name) {
            seen_explicit.insert(ns.name.as_str());
        }
        let wanted = spec.namespaces.matches(&ns.name)
            || spec
                .namespace_selector
                .as_ref()
                .is_some_and(|sel| selector_matches(sel, ns));
        if wanted && !spec.exclude_namespaces.matches(&ns.name) {
            out.namespaces.push(ns.name.clone());
        }
    }
    out.namespaces.sort();
    for name in spec.namespaces.literals() {
        if !spec.exclude_namespaces.matches(name) && !seen_explicit.contains(name) {
            out.missing.push(name.to_string());
        }
    }
    out.missing.sort();
    out.missing.dedup();
    out
}

/// `metav1.LabelSelector` semantics: every clause must hold; `{}` matches everything.
pub(crate) fn selector_matches(sel: &LabelSelector, ns: &NamespaceView) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| ns.label(k) == Some(v.as_str()))
        && sel.match_expressions.iter().all(|req| {
            let value = ns.label(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| req.values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| !req.values.iter().any(|x| x == v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::decide::patterns::*;
    use crate::reconcile::decide::spec::{LabelSelectorRequirement, Spec};

    #[test]
    fn labels_are_found_by_key_and_the_last_duplicate_wins() {
        let labels: Labels = [("b", "1"), ("a", "2"), ("b", "3")]
            .into_iter()
            .map(|(k, v)| (Arc::from(k), Arc::from(v)))
            .collect();
        assert_eq!(labels.get("a"), Some("2"));
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            vec![("a", "2"), ("b", "3")]
        );
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceView {
        NamespaceView {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
                .collect(),
            terminating: false,
        }
    }

    fn valid(json: serde_json::Value) -> ValidSpec {
        serde_json::from_value::<Spec>(json)
            .unwrap()
            .validate(&crate::reconcile::decide::validate::SpecPolicy::default())
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
        assert!(selector_matches(&sel, &ns("x", &[("env", "prod")])));
        assert!(!selector_matches(&sel, &ns("x", &[("env", "dev")])));
        assert!(!selector_matches(
            &sel,
            &ns("x", &[("env", "prod"), ("skip", "")])
        ));
        assert!(check_selector(&sel).is_ok());
    }

    /// A reference matcher by recursion, to check the automaton against.
    fn reference(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..])),
            (Some(b'?'), Some(_)) => reference(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
            _ => false,
        }
    }

    #[test]
    fn the_automaton_agrees_with_a_reference_matcher() {
        let patterns = [
            "*", "a*", "*a", "a*b", "**", "*a*b*", "?", "a?*", "*?", "te?m-*-x", "a**b",
        ];
        let names = [
            "", "a", "b", "ab", "aab", "abb", "team-1-x", "tem-x", "xab", "ba",
        ];
        for p in patterns {
            let g = Glob::compile(p).unwrap();
            for n in names {
                assert_eq!(
                    g.matches(n),
                    reference(p.as_bytes(), n.as_bytes()),
                    "{p} ~ {n}"
                );
            }
        }
    }

    #[test]
    fn bounds_on_patterns_and_selectors() {
        assert!(matches!(
            Glob::compile("*a*a*a*a*a*a*a*a*"),
            Err(PatternError::TooManyWildcards(_))
        ));
        assert!(matches!(
            Glob::compile("Team-*"),
            Err(PatternError::Invalid(_))
        ));
        assert!(Glob::compile(&"a".repeat(64)).is_err());
        let full = format!("*{}", "a".repeat(62));
        assert!(Glob::compile(&full).unwrap().matches(&"a".repeat(63)));
        let sel = LabelSelector {
            match_labels: Default::default(),
            match_expressions: (0..=MAX_SELECTOR_TERMS)
                .map(|i| LabelSelectorRequirement {
                    key: format!("k{i}"),
                    operator: "Exists".into(),
                    values: vec![],
                })
                .collect(),
        };
        assert!(check_selector(&sel).is_err());
    }

    #[test]
    fn finding_7_selector_errors_are_typed_and_keep_their_messages() {
        let term = |key: &str, operator: &str, values: &[&str]| LabelSelector {
            match_labels: Default::default(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        };
        let err = |sel: LabelSelector| check_selector(&sel).unwrap_err();
        let e = err(term("team", "In", &[]));
        assert_eq!(
            e,
            SelectorError::NeedsValues {
                operator: "In".into(),
                key: "\"team\"".into()
            }
        );
        assert_eq!(
            e.to_string(),
            r#"operator In on key "team" needs at least one value"#
        );
        let e = err(term("team", "Exists", &["a"]));
        assert_eq!(
            e.to_string(),
            r#"operator Exists on key "team" takes no values"#
        );
        let e = err(term("team", "Near", &[]));
        assert_eq!(
            e.to_string(),
            r#"unknown operator "Near" (In, NotIn, Exists, DoesNotExist)"#
        );
        // A credential pasted as a key reaches neither the message nor Debug.
        let secret = "AKIAABCDEFGHIJKLMNOP1234/xyz";
        let e = err(term(secret, "In", &[]));
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
}
