//! Objects in the Kubernetes emulator: writing a test's state straight into its store
//! (watchers see it; the request log does not, so it holds only the operator's requests)
//! and reading what the operator wrote.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use emulators::k8s::{K8sEmulator, RequestRecord};
use serde_json::{json, Value};

/// The managed-by label and annotations the operator puts on its Secrets.
pub(crate) const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ecr-creds-refresher");
pub(crate) const OWNER_ANNOTATION: &str = "ecr.creds.dev/owner";
pub(crate) const SA_OWNED_ANNOTATION: &str = "ecr.creds.dev/image-pull-secrets";
pub(crate) const DOCKERCONFIG_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub(crate) const DOCKERCONFIG_KEY: &str = ".dockerconfigjson";
pub(crate) const CR_RESOURCE: &str = "ecrpullsecrets";
pub(crate) const CR_API_VERSION: &str = "ecr.creds.dev/v1alpha1";

/// Creates or replaces an ECRPullSecret; a replaced one keeps its status and finalizers.
pub(crate) fn apply_cr(k8s: &K8sEmulator, name: &str, spec: Value) {
    let mut obj = k8s.get(CR_RESOURCE, None, name).unwrap_or_else(|| {
        json!({"apiVersion": CR_API_VERSION, "kind": "ECRPullSecret", "metadata": {"name": name}})
    });
    obj["spec"] = spec;
    k8s.apply(CR_RESOURCE, obj)
        .expect("CR passes the CRD schema");
}

/// The role grants ConfigMap (in the operator's namespace): which CRs may assume which
/// IAM role.
pub(crate) const ROLE_GRANTS: &str = "ecr-creds-refresher-role-grants";

/// Replaces the role grants in `namespace` (the operator's) with `grants`, (CR, role
/// ARNs) pairs, as a cluster admin would.
pub(crate) fn grant_roles(k8s: &K8sEmulator, namespace: &str, grants: &[(&str, &str)]) {
    let data: BTreeMap<&str, &str> = grants.iter().copied().collect();
    k8s.apply(
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": ROLE_GRANTS, "namespace": namespace}, "data": data}),
    )
    .expect("valid ConfigMap");
}

/// Creates a namespace without labels.
pub(crate) fn apply_namespace(k8s: &K8sEmulator, name: &str) {
    k8s.apply("namespaces", json!({"metadata": {"name": name}}))
        .expect("valid namespace");
}

/// A write verb (what a "writes nothing" rule counts).
pub(crate) fn is_write(r: &RequestRecord) -> bool {
    matches!(
        r.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// The Ready condition of a CR object.
pub(crate) fn ready_condition(cr: &Value) -> Option<&Value> {
    cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// Whether the CR reports Ready=True for its current generation.
pub(crate) fn is_ready(cr: &Value) -> bool {
    ready_condition(cr).is_some_and(|c| c["status"] == "True")
        && cr["status"]["observedGeneration"] == cr["metadata"]["generation"]
}

/// The names in a ServiceAccount's `imagePullSecrets`, in order.
pub(crate) fn pull_secret_names(sa: &Value) -> Vec<String> {
    sa["imagePullSecrets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The decoded `.dockerconfigjson` of a Secret object, if it has one.
pub(crate) fn try_docker_config(secret: &Value) -> Option<Value> {
    let bytes = B64
        .decode(secret["data"][DOCKERCONFIG_KEY].as_str()?)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The decoded `.dockerconfigjson` of a Secret object.
pub(crate) fn docker_config(secret: &Value) -> Value {
    try_docker_config(secret).expect("a .dockerconfigjson key holding base64 JSON")
}

/// The `auth` values (base64 "AWS:password") of a dockerconfigjson Secret, by host;
/// empty for any other Secret.
pub(crate) fn secret_auths(secret: &Value) -> BTreeMap<String, String> {
    let Some(config) = try_docker_config(secret) else {
        return BTreeMap::new();
    };
    config["auths"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(host, entry)| Some((host.clone(), entry["auth"].as_str()?.to_string())))
        .collect()
}
