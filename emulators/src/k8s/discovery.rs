//! API discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`), built
//! from the kinds table, so kubectl and discovery-based clients can talk to the emulator.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::kinds::KindTable;

const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The discovery document for `path`, if it is a discovery path.
pub(crate) fn document(path: &str, kinds: &KindTable) -> Option<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api"] => Some(json!({"kind": "APIVersions", "versions": ["v1"]})),
        ["apis"] => Some(group_list(kinds)),
        ["api", version] => resource_list(kinds, "", version),
        ["apis", group, version] => resource_list(kinds, group, version),
        ["apis", group] => group_list(kinds)["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == *group)
            .map(|g| {
                let mut g = g.clone();
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                g
            }),
        _ => None,
    }
}

fn group_list(kinds: &KindTable) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, k) in kinds.iter().filter(|(_, k)| !k.group.is_empty()) {
        let versions = groups.entry(k.group).or_default();
        if !versions.contains(&k.version) {
            versions.push(k.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": vs.clone(), "preferredVersion": vs[0].clone()})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(kinds: &KindTable, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for (_, k) in kinds
        .iter()
        .filter(|(_, k)| k.group == group && k.version == version)
    {
        resources.push(json!({
            "name": k.plural,
            "singularName": k.kind.to_lowercase(),
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": VERBS,
            "shortNames": k.short_names,
        }));
        if k.has_status {
            resources.push(json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::kinds::DEFAULT_KINDS;

    #[test]
    fn discovery_lists_every_served_kind_and_status_subresources() {
        let k = KindTable::new(DEFAULT_KINDS.to_vec());
        let core = document("/api/v1", &k).unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"secrets") && names.contains(&"namespaces/status"));
        let groups = document("/apis", &k).unwrap();
        assert!(groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "ecr.creds.dev"));
        let crs = document("/apis/ecr.creds.dev/v1alpha1", &k).unwrap();
        assert_eq!(crs["resources"][1]["name"], "ecrpullsecrets/status");
        assert!(document("/apis/nope/v1", &k).is_none());
    }
}
