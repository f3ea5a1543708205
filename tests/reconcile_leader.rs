//! End to end with two replicas and leader election: only the leader writes (the standby
//! does not even try), and when it shuts down (releasing the Lease) the standby takes over
//! within seconds.

mod common;

use std::time::Duration;

use serde_json::json;

use common::*;

fn leading(r: &ecr_creds_refresher::Running) -> bool {
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
    // The standby talks to the API server through a logging proxy: every request it
    // makes is seen, whatever the answer (a write refused with 409 or 403 included).
    let proxy = Proxy::start(env.k8s.addr()).await.expect("proxy starts");
    let (mut cfg, aws_env) = env.operator_config(false);
    cfg.identity = "replica-b".into();
    cfg.api_server = Some(proxy.url());
    let b = ecr_creds_refresher::start(&cfg, aws_env)
        .await
        .expect("operator starts");
    wait_until("replica-b has its caches", WAIT, || b.is_synced()).await;

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
    // The standby attempted no write but on its Lease (it did try that: the proxy is in
    // its path), whatever the answer would have been.
    let standby = proxy.requests();
    assert!(
        standby.iter().any(|r| r.is_lease()),
        "the standby never tried the Lease"
    );
    let attempts: Vec<String> = standby
        .iter()
        .filter(|r| r.is_write() && !r.is_lease())
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect();
    assert!(
        attempts.is_empty(),
        "the standby tried to write: {attempts:#?}"
    );
    // And over the API server's own log: each Secret was attempted once, by the leader,
    // and none was refused. The log records a request once its handler returns, just
    // after the store holds the Secret: wait for the four records first.
    wait_until("the API server logged the four creates", WAIT, || {
        env.writes_of("secrets").len() >= 4
    })
    .await;
    let secret_writes: Vec<String> = env
        .writes_of("secrets")
        .iter()
        .map(|r| format!("{} {:?} -> {}", r.verb, r.name, r.code))
        .collect();
    assert_eq!(
        secret_writes.len(),
        4,
        "one create per namespace: {secret_writes:#?}"
    );
    assert!(
        env.writes_of("secrets")
            .iter()
            .all(|r| r.verb == "create" && r.code < 300),
        "{secret_writes:#?}"
    );

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
