//! End to end, what deleting an ECRPullSecret does: with `deletionPolicy: Delete` a
//! finalizer holds the CR until our Secrets and only our ServiceAccount entries are gone;
//! with `Retain` (the default) the CR goes at once and everything it made stays.

mod common;

use std::time::Duration;

use serde_json::json;

use common::*;

const FINALIZER: &str = "ecr.creds.dev/cleanup";

fn finalizers(env: &Env, name: &str) -> Vec<String> {
    env.get_cr(name)
        .and_then(|cr| {
            cr["metadata"]["finalizers"].as_array().map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_policy_removes_our_secrets_and_entries_then_releases_the_cr() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["x1", "x2"] {
        env.namespace(ns, &[]).await;
    }
    env.service_account("x1", "default", &["keep-me"]);
    env.cr(
        "del",
        json!({"secretName": "del-pull", "namespaces": ["x?"], "deletionPolicy": "Delete"}),
    );
    env.cr(
        "neighbour",
        json!({"secretName": "other-pull", "namespaces": ["x1"]}),
    );
    env.start_operator().await;
    env.wait_ready("del").await;
    env.wait_ready("neighbour").await;
    wait_until("finalizer added", WAIT, || {
        finalizers(&env, "del") == [FINALIZER]
    })
    .await;
    wait_until("entries in place", WAIT, || {
        let mut names = env.pull_secrets("x1", "default");
        names.sort();
        names == ["del-pull", "keep-me", "other-pull"]
    })
    .await;
    assert!(
        finalizers(&env, "neighbour").is_empty(),
        "Retain needs no finalizer"
    );

    env.k8s.delete("ecrpullsecrets", None, "del").unwrap();
    wait_until("the CR is gone", WAIT, || env.get_cr("del").is_none()).await;
    for ns in ["x1", "x2"] {
        assert!(env.secret(ns, "del-pull").is_none(), "{ns}: Secret removed");
    }
    let mut names = env.pull_secrets("x1", "default");
    names.sort();
    assert_eq!(names, ["keep-me", "other-pull"], "only our entry removed");
    assert!(env.pull_secrets("x2", "default").is_empty());
    let owned =
        env.sa("x1", "default").unwrap()["metadata"]["annotations"][SA_OWNED_ANNOTATION].clone();
    assert_eq!(
        owned, "other-pull",
        "ownership of the neighbour's entry kept"
    );
    // The neighbour is untouched and still served.
    assert!(env.secret("x1", "other-pull").is_some());
    env.wait_ready("neighbour").await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_policy_lets_the_cr_go_at_once_and_keeps_what_it_made() {
    let env = Env::start().await;
    env.namespace("keep", &[]).await;
    env.cr(
        "ret",
        json!({"secretName": "ret-pull", "namespaces": ["keep"]}),
    );
    env.wait_ready("ret").await;
    wait_until("entry in place", WAIT, || {
        env.pull_secrets("keep", "default") == ["ret-pull"]
    })
    .await;
    env.settle(Duration::from_millis(200)).await;
    assert!(finalizers(&env, "ret").is_empty());
    let secret = env.secret("keep", "ret-pull").unwrap();

    env.k8s.delete("ecrpullsecrets", None, "ret").unwrap();
    assert!(env.get_cr("ret").is_none(), "no finalizer holds it");
    env.settle(Duration::from_millis(300)).await;
    assert_eq!(env.secret("keep", "ret-pull").unwrap(), secret);
    assert_eq!(env.pull_secrets("keep", "default"), ["ret-pull"]);
    assert!(
        env.requests_where(|r| r.verb == "delete").is_empty(),
        "nothing deleted"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_while_the_operator_is_down_is_finished_when_it_returns() {
    let mut env = Env::start().await;
    env.namespace("down", &[]).await;
    env.cr(
        "gone",
        json!({"secretName": "gone-pull", "namespaces": ["down"], "deletionPolicy": "Delete"}),
    );
    env.wait_ready("gone").await;
    wait_until("finalizer and entry in place", WAIT, || {
        finalizers(&env, "gone") == [FINALIZER]
            && env.pull_secrets("down", "default") == ["gone-pull"]
    })
    .await;
    env.stop_operator().await;

    env.k8s.delete("ecrpullsecrets", None, "gone").unwrap();
    let held = env.get_cr("gone").expect("the finalizer holds the CR");
    assert!(held["metadata"]["deletionTimestamp"].is_string());

    env.start_operator().await;
    wait_until("the CR is gone", WAIT, || env.get_cr("gone").is_none()).await;
    assert!(env.secret("down", "gone-pull").is_none());
    assert!(env.pull_secrets("down", "default").is_empty());
    env.shutdown().await;
}
