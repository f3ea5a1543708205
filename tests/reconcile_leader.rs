//! End to end with two replicas and leader election: only the leader writes, and when it
//! shuts down (releasing the Lease) the standby takes over within seconds.

mod common;

use std::time::Duration;

use serde_json::json;

use common::*;

fn leading(r: &ecr_creds_refresher::app::Running) -> bool {
    *r.leading.borrow()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_standby_takes_over_on_release() {
    let env = Env::emulators(Options {
        leader_election_namespace: Some("default".into()),
        ..Options::default()
    })
    .await;
    env.namespace("le-1", &[]).await;
    env.cr(
        "le",
        json!({"secretName": "ecr-pull", "namespaces": ["le-*"]}),
    );
    let a = env.spawn_operator("replica-a").await;
    wait_until("replica-a leads", WAIT, || leading(&a)).await;
    let b = env.spawn_operator("replica-b").await;
    wait_until("replica-b has its caches", WAIT, || b.caches.is_synced()).await;

    env.wait_ready("le").await;
    for i in 2..=4 {
        env.namespace(&format!("le-{i}"), &[]).await;
    }
    for i in 1..=4 {
        env.wait_secret(&format!("le-{i}"), "ecr-pull").await;
    }
    assert!(leading(&a) && !leading(&b), "exactly one leader");
    let lease = env
        .k8s
        .get("leases", Some("default"), "ecr-creds-refresher")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    // The standby wrote nothing: every Secret was created once.
    let creates = env
        .requests_where(|r| r.verb == "create" && r.resource == "secrets" && r.code < 300)
        .len();
    assert_eq!(creates, 4);

    // The leader leaves, releasing the Lease: the standby leads and serves.
    a.shutdown(Duration::from_secs(5), std::future::pending())
        .await;
    wait_until("replica-b leads", WAIT, || leading(&b)).await;
    env.namespace("le-5", &[]).await;
    env.wait_secret("le-5", "ecr-pull").await;
    let lease = env
        .k8s
        .get("leases", Some("default"), "ecr-creds-refresher")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    b.shutdown(Duration::from_secs(5), std::future::pending())
        .await;
    env.shutdown().await;
}
