//! The demo's cluster: the names it uses, its bounded waits, and the checks of what the
//! operator wrote (Secret content, ServiceAccount entries, CR readiness).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use emulators::k8s::K8sEmulator;
use serde_json::{json, Value};

/// Every wait is bounded: the demo fails with a message instead of hanging.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) const POLL: Duration = Duration::from_millis(10);

pub(crate) const CR_NAME: &str = "team-registry";

pub(crate) const SECRET_NAME: &str = "ecr-pull";

pub(crate) const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

pub(crate) fn create_namespace(k8s: &K8sEmulator, name: &str, labels: Value) -> Result<(), String> {
    k8s.apply(
        "namespaces",
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .map(|_| ())
    .map_err(|e| format!("cannot create namespace {name}: {e}"))
}

/// The Secret exists, has the right type and holds a non-empty credential for the registry.
pub(crate) fn secret_ok(k8s: &K8sEmulator, ns: &str) -> bool {
    k8s.get("secrets", Some(ns), SECRET_NAME)
        .and_then(|s| dockerconfig(&s).ok())
        .is_some_and(|d| {
            d["auths"][REGISTRY]["auth"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        })
}

pub(crate) fn sa_has(k8s: &K8sEmulator, ns: &str, sa: &str, secret: &str) -> bool {
    k8s.get("serviceaccounts", Some(ns), sa).is_some_and(|s| {
        s["imagePullSecrets"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["name"] == secret))
    })
}

pub(crate) fn ready_count(k8s: &K8sEmulator) -> u64 {
    let Some(cr) = k8s.get("ecrpullsecrets", None, CR_NAME) else {
        return 0;
    };
    let ready = cr["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    if ready {
        cr["status"]["syncedNamespaces"].as_u64().unwrap_or(0)
    } else {
        0
    }
}

/// The decoded `.dockerconfigjson` of a Secret.
pub(crate) fn dockerconfig(secret: &Value) -> Result<Value, String> {
    if secret["type"] != "kubernetes.io/dockerconfigjson" {
        return Err(format!("unexpected Secret type {}", secret["type"]));
    }
    let b64 = secret["data"][".dockerconfigjson"]
        .as_str()
        .ok_or("no .dockerconfigjson key")?;
    let raw = STANDARD
        .decode(b64)
        .map_err(|e| format!(".dockerconfigjson is not base64: {e}"))?;
    serde_json::from_slice(&raw).map_err(|e| format!(".dockerconfigjson is not JSON: {e}"))
}

/// The condition of type `type_` in a CR's status.
pub(crate) fn condition(cr: &Value, type_: &str) -> Option<Value> {
    cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}
