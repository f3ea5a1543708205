//! The writer against the Kubernetes emulator on loopback: what the API server's
//! preconditions must refuse.

use serde_json::json;

use crate::k8s::types::Secret;
use crate::k8s::{Client, ClientConfig};
use crate::reconcile::decide::state::ManagedSecret;
use emulators::k8s::{EmulatorConfig, K8sEmulator};

use super::Writer;

/// The emulated API server with namespaces `default` and `two`, and a client of it.
async fn emulator() -> (K8sEmulator, Client) {
    let emu = K8sEmulator::start(EmulatorConfig {
        namespaces: vec!["default".into(), "two".into()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = Client::new(ClientConfig::new(&emu.url()).unwrap()).unwrap();
    (emu, client)
}

/// Hardening finding 6: deletes carried no precondition, so a Secret replaced since the
/// cache saw it (another owner's, under the same name) was deleted. The uid precondition
/// makes the server refuse with 409, and the replacement stays.
#[tokio::test]
async fn finding_6_a_delete_of_a_secret_replaced_since_it_was_seen_is_refused() {
    let (emu, client) = emulator().await;
    let ours = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "two",
                     "labels": {"app.kubernetes.io/managed-by": "ecr-creds-refresher"},
                     "annotations": {"ecr.creds.dev/owner": "team", "ecr.creds.dev/owner-uid": "u1"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="}});
    emu.apply("secrets", ours.clone()).unwrap();
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

/// Records what a writer puts in front of the watch.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<Option<ManagedSecret>>>);

impl super::WriteThrough for Recorded {
    fn secret_written(&self, _: &str, _: &str, projection: Option<ManagedSecret>) {
        self.0.lock().unwrap().push(projection);
    }
    fn secret_deleted(&self, _: &str, _: &str, _: &str) {}
    fn service_account_written(&self, _: &crate::k8s::types::ServiceAccount) {}
    fn service_account(&self, _: &str, _: &str) -> Option<crate::reconcile::decide::state::SaView> {
        None
    }
}

/// Our Secret writes ask for their answer's metadata only, so the ~9 KB of data we sent
/// does not come back (the emulator shapes answers as the real server does). What the
/// writer puts in front of the watch from that answer is what the watch makes of the
/// whole object: the create and the refresh alike.
#[tokio::test]
async fn a_secret_write_reads_back_only_metadata_and_caches_what_the_watch_would() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::reconcile::decide::content::Content;
    use crate::reconcile::decide::dockerconfig::{self, AuthEntry};
    use crate::reconcile::vocab::Owner;

    let (emu, client) = emulator().await;
    let recorded = Arc::new(Recorded::default());
    let writer = Writer::new(client.clone()).with_cache(recorded.clone());
    let owner = Owner {
        name: "team".into(),
        uid: "u1".into(),
    };
    let content = |password: &str, hours: i64| {
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string();
        let entries = BTreeMap::from([(
            host.clone(),
            AuthEntry {
                username: "AWS".into(),
                password: password.into(),
                auth: base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("AWS:{password}"),
                ),
            },
        )]);
        let data = dockerconfig::encode(&entries);
        let now = time::OffsetDateTime::now_utc();
        Content {
            checksum: dockerconfig::checksum(&data),
            hosts: vec![host],
            entries,
            data,
            refresh_at: now + time::Duration::hours(hours / 2),
            expires_at: now + time::Duration::hours(hours),
        }
    };
    let first = super::SecretContent::new(&owner, "pull", &content(&"a".repeat(2700), 12));

    // The raw answer: metadata, no data.
    let answer = client
        .create_raw(
            "/api/v1/namespaces/default/secrets",
            first.bodies.create("default"),
        )
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["kind"], "PartialObjectMetadata", "{answer}");
    assert!(answer.get("data").is_none() && answer.get("type").is_none());
    assert!(answer["metadata"]["resourceVersion"].is_string());

    let stored = |emu: &K8sEmulator| {
        let whole: Secret =
            serde_json::from_value(emu.get("secrets", Some("two"), "pull").unwrap()).unwrap();
        ManagedSecret::project(&whole).unwrap()
    };
    let outcome = writer
        .create_secret("two", "pull", &first, false)
        .await
        .unwrap();
    assert_eq!(outcome, super::SecretOutcome::Written);
    let created = stored(&emu);
    assert!(created.intact);
    assert_eq!(
        recorded.0.lock().unwrap().last(),
        Some(&Some(created.clone()))
    );

    let second = super::SecretContent::new(&owner, "pull", &content(&"b".repeat(2700), 13));
    writer
        .refresh_secret("two", "pull", &created.resource_version, &second)
        .await
        .unwrap();
    let refreshed = stored(&emu);
    assert!(refreshed.intact && refreshed.resource_version != created.resource_version);
    assert_eq!(recorded.0.lock().unwrap().last(), Some(&Some(refreshed)));
    emu.shutdown().await;
}
