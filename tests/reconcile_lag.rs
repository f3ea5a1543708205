//! Read your own writes against an API server whose watch trails its writes, as a busy
//! kube-apiserver's watch cache does (the emulator's watch lag, plus stalls): the
//! operator plans from what it wrote, not from what the watch has caught up to.
//! - the first sync is one create per Secret and one patch per ServiceAccount;
//! - no request meets a 409 on an object the operator created, and no write is made twice;
//! - a reconcile that changes nothing makes no request.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use emulators::k8s::{FaultConfig, WatchLag};
use serde_json::json;

use common::*;

const NAMESPACES: usize = 30;

fn lag(ms: u64) -> WatchLag {
    WatchLag {
        fixed_ms: ms,
        random_ms: ms / 2,
        seed: 11,
        ..WatchLag::default()
    }
}

/// (create, patch) counts per object, and answers 409 among them.
fn writes_by_object(env: &Env, resource: &str) -> (BTreeMap<String, (usize, usize)>, usize) {
    let mut by = BTreeMap::new();
    let mut conflicts = 0;
    for r in env.writes_of(resource) {
        if r.code == 409 {
            conflicts += 1;
        }
        // A create is logged against its collection: the name is in the answer, so
        // count creates per namespace (one Secret name per namespace here).
        let key = format!(
            "{}/{}",
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default()
        );
        let entry = by.entry(key).or_insert((0, 0));
        match r.verb.as_str() {
            "create" => entry.0 += 1,
            "patch" | "update" => entry.1 += 1,
            _ => {}
        }
    }
    (by, conflicts)
}

async fn first_sync_under(watch_lag: WatchLag, stall: bool) {
    let mut env = Env::emulators(Options::default()).await;
    let names: Vec<String> = (0..NAMESPACES).map(|i| format!("lag-{i:02}")).collect();
    for ns in &names {
        env.namespace(ns, &[]).await;
    }
    env.start_operator().await;
    env.settle(Duration::from_millis(200)).await;
    env.k8s.set_watch_lag(watch_lag);
    env.k8s.clear_requests();
    // Two CRs over the same namespaces and ServiceAccounts: each one's writes echo
    // back late and wake the other.
    env.cr(
        "one",
        json!({"secretName": "pull-one", "namespaces": ["lag-*"]}),
    );
    env.cr(
        "two",
        json!({"secretName": "pull-two", "namespaces": ["lag-*"]}),
    );
    if stall {
        env.k8s.stall_watches(Duration::from_secs(2));
    }
    env.wait_synced("one", NAMESPACES).await;
    env.wait_synced("two", NAMESPACES).await;
    // Let every late echo arrive and every reconcile it wakes run.
    env.settle(Duration::from_secs(3)).await;

    let (secrets, secret_conflicts) = writes_by_object(&env, "secrets");
    let creates: usize = secrets.values().map(|(c, _)| c).sum();
    let patches: usize = secrets.values().map(|(_, p)| p).sum();
    assert_eq!(
        creates,
        2 * NAMESPACES,
        "one create per Secret: {secrets:?}"
    );
    assert_eq!(patches, 0, "no Secret written twice: {secrets:?}");
    assert_eq!(secret_conflicts, 0, "409s on our own Secrets");
    let (sas, sa_conflicts) = writes_by_object(&env, "serviceaccounts");
    assert_eq!(sas.len(), NAMESPACES, "{sas:?}");
    assert!(
        sas.values().all(|(_, p)| *p == 2),
        "one patch per ServiceAccount per CR: {sas:?}"
    );
    assert_eq!(sa_conflicts, 0, "409/422 races on ServiceAccounts");
    for ns in &names {
        assert_eq!(env.pull_secrets(ns, "default").len(), 2, "{ns}");
    }

    // A reconcile that changes nothing makes no request at all.
    env.k8s.clear_requests();
    env.reconcile_directly("one", 3).await;
    env.reconcile_directly("two", 3).await;
    let requests = env.requests_where(|r| r.verb != "watch" && r.verb != "list");
    assert!(requests.is_empty(), "no-op reconciles sent {requests:?}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_under_200ms_of_watch_lag_writes_each_object_once() {
    first_sync_under(lag(200), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_under_2s_of_watch_lag_and_a_stall_writes_each_object_once() {
    first_sync_under(lag(2000), true).await;
}

/// The watch can deliver our CR write, and an edit made right after it, before our
/// write's answer arrives (here every answer to a CR write leaves 500 ms late). The
/// answer then describes an older CR than the cache holds: it must not stand in front
/// of the edit, or the reconcile the edit wakes plans the old spec (for up to a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_the_watch_delivers_before_our_status_answer_is_planned_at_once() {
    let mut env = Env::emulators(Options::default()).await;
    env.namespace("app", &[]).await;
    env.start_operator().await;
    env.settle(Duration::from_millis(200)).await;
    env.k8s.faults().set(FaultConfig {
        answer_delay_ms: 500,
        verbs: vec!["patch".into(), "update".into()],
        resources: vec![CR_RESOURCE.into()],
        ..FaultConfig::default()
    });
    env.cr(
        "edit",
        json!({"secretName": "pull-a", "namespaces": ["app"]}),
    );
    // The status is committed; the operator has not had the answer yet.
    wait_until("status committed", WAIT, || {
        env.get_cr("edit")
            .is_some_and(|cr| cr["status"]["conditions"].is_array())
    })
    .await;
    env.cr(
        "edit",
        json!({"secretName": "pull-b", "namespaces": ["app"]}),
    );
    let edited = env.get_cr("edit").expect("CR exists")["metadata"]["generation"].clone();

    // Well inside a minute: the answer of the status write does not hide the edit.
    wait_until("Secret app/pull-b", Duration::from_secs(10), || {
        env.secret("app", "pull-b").is_some()
    })
    .await;
    let cr = env.wait_ready("edit").await;
    assert_eq!(cr["metadata"]["generation"], edited);
    env.shutdown().await;
}

/// The same race with a deletion: the operator restores a Secret edited by hand; the
/// owner deletes it while the answer to that patch is on its way (500 ms late). The
/// watch delivers the patch and the deletion first; the late answer must not put the
/// Secret back in the cache, or the reconcile the deletion wakes sees nothing to
/// restore (until the next refresh, hours away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_deleted_before_our_patch_is_answered_is_restored_at_once() {
    use base64::Engine;
    let mut env = Env::emulators(Options::default()).await;
    env.namespace("app", &[]).await;
    env.cr("cr", json!({"secretName": "pull", "namespaces": ["app"]}));
    env.start_operator().await;
    env.wait_ready("cr").await;
    let ours = env.wait_secret("app", "pull").await["data"].clone();
    env.settle(Duration::from_millis(200)).await;

    env.k8s.faults().set(FaultConfig {
        answer_delay_ms: 500,
        verbs: vec!["patch".into()],
        resources: vec!["secrets".into()],
        ..FaultConfig::default()
    });
    let mut edited = env.secret("app", "pull").expect("our Secret");
    let foreign = r#"{"auths":{"evil.example.com":{"auth":"eDp5"}}}"#;
    edited["data"][DOCKERCONFIG_KEY] =
        json!(base64::engine::general_purpose::STANDARD.encode(foreign));
    env.k8s.apply("secrets", edited).expect("valid Secret");
    // The restoring patch is committed; its answer is not back yet.
    wait_until("edit restored", WAIT, || {
        env.secret("app", "pull").is_some_and(|s| s["data"] == ours)
    })
    .await;
    env.k8s
        .delete("secrets", Some("app"), "pull")
        .expect("deleted");
    assert!(env.secret("app", "pull").is_none());

    wait_until(
        "Secret restored after the deletion",
        Duration::from_secs(10),
        || env.secret("app", "pull").is_some(),
    )
    .await;
    env.wait_ready("cr").await;
    env.shutdown().await;
}
