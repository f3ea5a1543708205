//! URL parsing: which kind, namespace, name and subresource a path names, the verb a
//! request maps to (as RBAC sees it), and query-string decoding.

use super::kinds::KindTable;
use super::status::ApiError;
use crate::form::percent_decode;

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub kind: usize,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...`.
pub(crate) fn parse(path: &str, kinds: &KindTable) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let lookup = |plural: &str| {
        kinds
            .by_url(group, version, plural)
            .ok_or_else(ApiError::path_not_found)
    };
    let route = |kind, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Route {
        kind,
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    };
    let r = match rest {
        [plural] => route(lookup(plural)?, None, None, None),
        ["namespaces", ns, plural] if !matches!(*plural, "status" | "finalize") => {
            route(lookup(plural)?, Some(ns), None, None)
        }
        ["namespaces", ns, plural, name] => route(lookup(plural)?, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => {
            route(lookup(plural)?, Some(ns), Some(name), Some(sub))
        }
        [plural, name] => route(lookup(plural)?, None, Some(name), None),
        [plural, name, sub] => route(lookup(plural)?, None, Some(name), Some(sub)),
        _ => return Err(ApiError::path_not_found()),
    };
    let spec = kinds.get(r.kind);
    if r.namespace.is_some() && !spec.namespaced {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = &r.subresource {
        if !(sub == "status" && spec.has_status) {
            return Err(ApiError::path_not_found());
        }
    }
    Ok(r)
}

/// The RBAC verb of a request.
pub(crate) fn verb(method: &str, route: &Route, watch: bool) -> &'static str {
    match (method, route.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

/// Decoded query parameters, in order.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::kinds::{KindTable, DEFAULT_KINDS};

    #[test]
    fn paths_map_to_kind_namespace_name_and_subresource() {
        let k = KindTable::new(DEFAULT_KINDS.to_vec());
        let r = parse("/api/v1/namespaces/a/secrets/s", &k).unwrap();
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref()),
            (Some("a"), Some("s"))
        );
        let r = parse("/api/v1/namespaces/a", &k).unwrap();
        assert_eq!(k.get(r.kind).plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("a"));
        let r = parse("/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets/x/status", &k).unwrap();
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert!(parse("/api/v1/namespaces/a/secrets/s/status", &k).is_err());
        assert!(parse(
            "/apis/ecr.creds.dev/v1alpha1/namespaces/a/ecrpullsecrets",
            &k
        )
        .is_err());
        let r = parse("/apis/events.k8s.io/v1/events", &k).unwrap();
        assert_eq!(k.get(r.kind).group, "events.k8s.io");
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = query_pairs("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x=%");
        assert_eq!(q[0], ("labelSelector".into(), "app=web,tier in (a)".into()));
        assert_eq!(q[2], ("x".into(), "%".into()));
    }
}
