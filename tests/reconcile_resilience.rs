//! End to end, the Kubernetes side misbehaving: failing writes, dropped watches, an API
//! server restart and a compacted history. The operator converges on the same state and
//! keeps serving changes made meanwhile.

mod common;

use emulators::k8s::FaultConfig;
use serde_json::json;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_writes_are_retried_then_reported_until_every_namespace_is_served() {
    let env = Env::start().await;
    for i in 0..6 {
        env.namespace(&format!("w{i}"), &[]).await;
    }
    // A blip: every second Secret create fails with a 500 (no Retry-After: the client
    // does not retry it itself), three times. Retried within the reconcile, it never
    // counts: no namespace is reported, no Warning.
    env.k8s.faults().set(FaultConfig {
        error_code: Some(500),
        every_nth: Some(2),
        verbs: vec!["create".into()],
        resources: vec!["secrets".into()],
        max_errors: Some(3),
        ..Default::default()
    });
    env.cr("w", json!({"secretName": "ecr-pull", "namespaces": ["w?"]}));
    env.wait_synced("w", 6).await;
    assert_eq!(env.k8s.faults().injected(), 3);
    assert!(
        env.events_for("w").iter().all(|e| e["type"] == "Normal"),
        "a blip was reported: {:?}",
        env.events_for("w")
    );

    // An outage: every create fails for as long as it lasts. Retries run out, the
    // failure is reported, and the namespaces are served once it ends.
    env.k8s.faults().set(FaultConfig {
        error_code: Some(500),
        every_nth: Some(1),
        verbs: vec!["create".into()],
        resources: vec!["secrets".into()],
        ..Default::default()
    });
    env.cr(
        "x",
        json!({"secretName": "other-pull", "namespaces": ["w?"]}),
    );
    wait_until("a Warning event for the failed writes", WAIT, || {
        env.events_for("x").iter().any(|e| {
            e["type"] == "Warning"
                && e["reason"] == "NamespaceErrors"
                && e["message"].as_str().unwrap_or("").contains("500")
        })
    })
    .await;
    env.k8s.faults().clear();
    env.wait_synced("x", 6).await;
    for i in 0..6 {
        let ns = format!("w{i}");
        assert!(env.secret(&ns, "ecr-pull").is_some(), "{ns}");
        assert!(env.secret(&ns, "other-pull").is_some(), "{ns}");
        assert_eq!(
            env.pull_secrets(&ns, "default"),
            ["ecr-pull", "other-pull"],
            "{ns}"
        );
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_and_an_api_server_restart_lose_no_change() {
    let env = Env::start().await;
    env.namespace("before", &[]).await;
    env.cr(
        "cr",
        json!({"secretName": "ecr-pull", "namespaces": ["*"],
                        "excludeNamespaces": ["kube-*", "default"]}),
    );
    env.wait_secret("before", "ecr-pull").await;
    env.wait_ready("cr").await;

    env.k8s.drop_watches();
    env.namespace("after-drop", &[]).await;
    env.wait_secret("after-drop", "ecr-pull").await;

    env.k8s.restart().await.unwrap();
    env.namespace("after-restart", &[]).await;
    env.wait_secret("after-restart", "ecr-pull").await;

    // A compacted history answers the re-watch with 410: the operator relists.
    env.k8s.compact();
    env.k8s.drop_watches();
    env.namespace("after-compact", &[]).await;
    env.wait_secret("after-compact", "ecr-pull").await;
    env.k8s
        .delete("secrets", Some("before"), "ecr-pull")
        .unwrap();
    env.wait_secret("before", "ecr-pull").await;

    env.wait_synced("cr", 4).await;
    env.shutdown().await;
}
