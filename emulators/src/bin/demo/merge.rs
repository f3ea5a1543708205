//! `secretPolicy: Merge` in the demo: the operator maintains its ECR entry inside a pull
//! secret the platform team owns, and keeps the Docker Hub entry byte for byte.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use emulators::k8s::K8sEmulator;
use emulators::operator::OperatorChild;
use emulators::wait::poll;
use serde_json::{json, Value};

use super::cluster::{create_namespace, dockerconfig, POLL, REGISTRY, WAIT};
use super::say::{mask, print_map, section, step};

/// The platform team's shared pull secret: a Docker Hub entry the operator must keep.
const SHARED_SECRET: &str = "pull-secret";

const DOCKER_HUB_ENTRY: &str = r#"{"auth": "ZG9ja2VyOmh1Yg==", "email": "platform@example.com"}"#;

const MERGE_CR: &str = r#"apiVersion: ecr.creds.dev/v1alpha1
kind: ECRPullSecret
metadata:
  name: shared-registry
spec:
  secretName: pull-secret
  namespaces: [platform]
  registries: [123456789012.dkr.ecr.us-east-1.amazonaws.com]
  secretPolicy: Merge     # maintain only this registry's entry in someone else's Secret
"#;

/// `secretPolicy: Merge`: our ECR entry into a shared pull secret, its Docker Hub entry
/// kept byte for byte.
pub(crate) async fn merge_into_shared_secret(
    k8s: &K8sEmulator,
    operator: &OperatorChild,
) -> Result<(), String> {
    create_namespace(k8s, "platform", json!({}))?;
    let config = format!(r#"{{"auths":{{"https://index.docker.io/v1/":{DOCKER_HUB_ENTRY}}}}}"#);
    k8s.apply(
        "secrets",
        json!({"metadata": {"name": SHARED_SECRET, "namespace": "platform",
                            "annotations": {"owner": "platform-team"}},
               "type": "kubernetes.io/dockerconfigjson",
               "data": {".dockerconfigjson": STANDARD.encode(&config)}}),
    )
    .map_err(|e| format!("cannot create the shared pull secret: {e}"))?;
    step("Namespace platform holds a shared pull secret `pull-secret` with a Docker Hub entry.");
    let cr: Value = serde_yaml::from_str(MERGE_CR)
        .map_err(|e| format!("the merge CR is not valid YAML: {e}"))?;
    k8s.apply("ecrpullsecrets", cr)
        .map_err(|e| format!("the emulator refused the merge ECRPullSecret: {e}"))?;
    step("Applied this ECRPullSecret:");
    for line in MERGE_CR.lines() {
        println!("      {line}");
    }
    let merged = poll(WAIT, POLL, async || {
        let s = k8s.get("secrets", Some("platform"), SHARED_SECRET)?;
        let d = dockerconfig(&s).ok()?;
        d["auths"][REGISTRY]["auth"].as_str()?;
        Some(s)
    })
    .await
    .ok_or_else(|| {
        format!(
            "the ECR entry was not merged into platform/pull-secret within {WAIT:?}; operator log:\n{}",
            operator.log_tail(20)
        )
    })?;
    let raw = STANDARD
        .decode(
            merged["data"][".dockerconfigjson"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| format!("the shared pull secret is not base64: {e}"))?;
    let text = String::from_utf8_lossy(&raw).to_string();
    if !text.contains(DOCKER_HUB_ENTRY) {
        return Err(format!(
            "the Docker Hub entry was not kept byte for byte: {text}"
        ));
    }
    section(&format!(
        "Secret platform/{SHARED_SECRET} after the merge (passwords masked)"
    ));
    let mut config = dockerconfig(&merged)?;
    if let Some(auths) = config["auths"].as_object_mut() {
        for (host, entry) in auths.iter_mut() {
            let note = if host == REGISTRY {
                "added by the operator"
            } else {
                "kept byte for byte"
            };
            let user = entry["username"].as_str().unwrap_or("");
            let auth = entry["auth"].as_str().map(mask).unwrap_or_default();
            println!("  auths[{host}]: username {user:?} auth {auth}   # {note}");
        }
    }
    println!("  annotations:");
    print_map(&merged["metadata"]["annotations"], "    ");
    println!("  (only data[.dockerconfigjson] and ecr.creds.dev/merged-hosts changed; the rest is the owner's)");
    let denials = k8s.admission_denials();
    if !denials.is_empty() {
        return Err(format!(
            "the shipped admission policy denied the merge: {denials:?}"
        ));
    }
    Ok(())
}
