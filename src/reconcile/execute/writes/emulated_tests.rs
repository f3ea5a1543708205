//! The writer against the Kubernetes emulator on loopback: what the API server's
//! preconditions must refuse.

use serde_json::json;

use crate::k8s::types::Secret;
use crate::k8s::{Client, ClientConfig};
use crate::reconcile::decide::state::ManagedSecret;
use emulators::k8s::{EmulatorConfig, K8sEmulator};

use super::Writer;

/// Hardening finding 6: deletes carried no precondition, so a Secret replaced since the
/// cache saw it (another owner's, under the same name) was deleted. The uid precondition
/// makes the server refuse with 409, and the replacement stays.
#[tokio::test]
async fn finding_6_a_delete_of_a_secret_replaced_since_it_was_seen_is_refused() {
    let emu = K8sEmulator::start(EmulatorConfig {
        namespaces: vec!["default".into(), "two".into()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let ours = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "two",
                     "labels": {"app.kubernetes.io/managed-by": "ecr-creds-refresher"},
                     "annotations": {"ecr.creds.dev/owner": "team", "ecr.creds.dev/owner-uid": "u1"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="}});
    emu.apply("secrets", ours.clone()).unwrap();
    let client = Client::new(ClientConfig::new(&emu.url()).unwrap()).unwrap();
    let seen: Secret = client
        .get("/api/v1/namespaces/two/secrets/pull")
        .await
        .unwrap();
    let stale = ManagedSecret::project(&seen).expect("a managed Secret");
    // Replaced under the same name: a new object, a new uid.
    emu.delete("secrets", Some("two"), "pull").unwrap();
    emu.apply("secrets", ours).unwrap();

    let err = Writer::new(client.clone())
        .delete_secret(&stale)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    assert!(
        emu.get("secrets", Some("two"), "pull").is_some(),
        "deleted a replaced Secret"
    );
    emu.shutdown().await;
}

/// The typed ServiceAccount patch serialises to the operations the `Value` it replaced
/// held, in the same order: test, entries, then our annotation (created, set or removed).
#[test]
fn the_service_account_patch_is_the_json_patch_it_always_was() {
    use std::sync::Arc;

    use crate::reconcile::decide::plan::SaChange;
    use crate::reconcile::decide::state::SaView;
    use crate::reconcile::vocab::SA_OWNED_ANNOTATION;

    let key = format!(
        "/metadata/annotations/{}",
        SA_OWNED_ANNOTATION.replace('/', "~1")
    );
    let ops = |view: &SaView, ch: &SaChange| {
        serde_json::to_value(super::sa_patch::SaPatch::new(view, ch)).unwrap()
    };
    let sa = |has_annotations: bool, owned: &[&str]| SaView {
        namespace: Arc::from("apps"),
        name: Arc::from("default"),
        resource_version: "41".into(),
        pull_secrets: vec![Arc::from("theirs")],
        owned: owned.iter().map(|n| Arc::from(*n)).collect(),
        has_annotations,
    };
    let change = |owned: &[&str]| SaChange {
        pull_secrets: vec![Arc::from("theirs"), Arc::from("pull")],
        owned: owned.iter().map(|n| Arc::from(*n)).collect(),
    };
    let test = json!({"op": "test", "path": "/metadata/resourceVersion", "value": "41"});
    let entries = json!({"op": "add", "path": "/imagePullSecrets",
                         "value": [{"name": "theirs"}, {"name": "pull"}]});

    let (view, ch) = (sa(false, &[]), change(&["pull"]));
    assert_eq!(
        ops(&view, &ch),
        json!([test, entries, {"op": "add", "path": "/metadata/annotations",
                               "value": {SA_OWNED_ANNOTATION: "pull"}}])
    );

    let (view, ch) = (sa(true, &["old"]), change(&["old", "pull"]));
    assert_eq!(
        ops(&view, &ch),
        json!([test, entries, {"op": "add", "path": key, "value": "old,pull"}])
    );

    let (view, ch) = (sa(true, &["pull"]), change(&[]));
    assert_eq!(
        ops(&view, &ch),
        json!([test, entries, {"op": "remove", "path": key}])
    );

    // Nothing of ours was recorded and nothing is: the annotation is left alone.
    let (view, ch) = (sa(true, &[]), change(&[]));
    assert_eq!(ops(&view, &ch), json!([test, entries]));
}
