//! Optional RBAC enforcement: a policy of rules (as in Roles and ClusterRoles) checked
//! against every API request, answering 403 Forbidden with the real server's message. Lets a
//! test run a client under exactly the permissions its chart grants.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::status::ApiError;

/// One rule, with the fields of rbac.authorization.k8s.io/v1 PolicyRule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRule {
    /// Verbs granted, or `*`.
    pub verbs: Vec<String>,
    /// API groups ("" for core), or `*`.
    pub api_groups: Vec<String>,
    /// Plural names, `plural/subresource` for subresources, or `*`.
    pub resources: Vec<String>,
    /// Only objects of these names; empty = any.
    pub resource_names: Vec<String>,
    /// `None`: granted everywhere (a ClusterRole through a ClusterRoleBinding);
    /// `Some(ns)`: only in that namespace (a Role, or a ClusterRole through a RoleBinding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The identity requests run as, and what it may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RbacPolicy {
    /// Shown in 403 messages, e.g. `system:serviceaccount:ecr:ecr-creds-refresher`.
    pub user: String,
    /// What is granted; a request no rule allows is forbidden.
    pub rules: Vec<PolicyRule>,
}

/// What a request asks to do, in RBAC terms.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The Kubernetes verb: get, list, watch, create, update, patch, delete...
    pub verb: &'a str,
    /// The API group ("" for core).
    pub group: &'a str,
    /// The plural, e.g. "secrets".
    pub resource: &'a str,
    /// "status", or "" for the main resource.
    pub subresource: &'a str,
    /// `None` for cluster-scoped or all-namespace requests.
    pub namespace: Option<&'a str>,
    /// `None` for collection requests.
    pub name: Option<&'a str>,
}

fn any_or(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

// === impl PolicyRule ===

impl PolicyRule {
    fn allows(&self, a: &Attributes<'_>) -> bool {
        if let Some(ns) = &self.namespace {
            if a.namespace != Some(ns.as_str()) {
                return false;
            }
        }
        let resource = if a.subresource.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || *r == resource
                || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
        });
        let name_ok = self.resource_names.is_empty()
            || a.name
                .is_some_and(|n| self.resource_names.iter().any(|r| r == n));
        any_or(&self.verbs, a.verb) && any_or(&self.api_groups, a.group) && resource_ok && name_ok
    }
}

// === impl RbacPolicy ===

impl RbacPolicy {
    /// Adds the rules of a Role or ClusterRole manifest (YAML or JSON, several documents
    /// allowed; other kinds are skipped). `namespace` scopes them as a RoleBinding would;
    /// a Role is always scoped to its own namespace.
    pub fn add_role_yaml(&mut self, yaml: &str, namespace: Option<&str>) -> Result<(), String> {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v = Value::deserialize(doc).map_err(|e| format!("parsing the role YAML: {e}"))?;
            let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
            if kind != "Role" && kind != "ClusterRole" {
                continue;
            }
            let scope = if kind == "Role" {
                v.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            } else {
                namespace.map(str::to_string)
            };
            for r in v
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut rule: PolicyRule = serde_json::from_value(r.clone())
                    .map_err(|e| format!("reading a rule: {e}"))?;
                rule.namespace = scope.clone();
                self.rules.push(rule);
            }
        }
        Ok(())
    }

    /// Ok when a rule allows `a`, else 403 Forbidden worded as the real server words it.
    pub fn check(&self, a: &Attributes<'_>) -> Result<(), ApiError> {
        if self.rules.iter().any(|r| r.allows(a)) {
            return Ok(());
        }
        let resource = if a.subresource.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let qualified = if a.group.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}.{}", a.resource, a.group)
        };
        let subject = match a.name {
            Some(n) => format!("{qualified} \"{n}\""),
            None => qualified,
        };
        let scope = match a.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut e = ApiError::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                self.user, a.verb, a.group
            ),
        );
        let mut details = json!({"kind": a.resource});
        if let Some(n) = a.name {
            details["name"] = json!(n);
        }
        if !a.group.is_empty() {
            details["group"] = json!(a.group);
        }
        e.details = Some(details);
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: &'a str,
        ns: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            subresource: sub,
            namespace: ns,
            name,
        }
    }

    #[test]
    fn role_rules_apply_only_in_their_namespace_and_cluster_rules_everywhere() {
        let mut p = RbacPolicy {
            user: "u".into(),
            rules: vec![],
        };
        p.add_role_yaml(
            "kind: ClusterRole\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list]\n---\nkind: Role\nmetadata: {namespace: a}\nrules:\n- apiGroups: [\"\"]\n  resources: [serviceaccounts]\n  verbs: [patch]\n  resourceNames: [default]\n",
            None,
        )
        .unwrap();
        assert!(p.check(&attrs("list", "secrets", "", None, None)).is_ok());
        assert!(p
            .check(&attrs("get", "secrets", "", Some("x"), Some("s")))
            .is_ok());
        assert!(p
            .check(&attrs(
                "patch",
                "serviceaccounts",
                "",
                Some("a"),
                Some("default")
            ))
            .is_ok());
        assert!(p
            .check(&attrs(
                "patch",
                "serviceaccounts",
                "",
                Some("b"),
                Some("default")
            ))
            .is_err());
        assert!(p
            .check(&attrs(
                "patch",
                "serviceaccounts",
                "",
                Some("a"),
                Some("other")
            ))
            .is_err());
        let e = p
            .check(&attrs("delete", "secrets", "", Some("x"), Some("s")))
            .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "secrets \"s\" is forbidden: User \"u\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"x\""
        );
    }
}
