//! End to end, what the operator does when nothing should change and when someone else
//! changes its objects: hand edits are undone, restarts and no-op reconciles write
//! nothing and call no AWS, status is written only when it changes, watches stay
//! cluster-wide.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use common::*;

const QUIET: Duration = Duration::from_millis(300);

/// Three namespaces served by CR `cr` (`d?`: not `default`), settled.
async fn served() -> Env {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["d1", "d2", "d3"] {
        env.namespace(ns, &[]).await;
    }
    env.cr(
        "cr",
        json!({"secretName": "ecr-pull", "namespaces": ["d?"]}),
    );
    env.start_operator().await;
    env.wait_ready("cr").await;
    for ns in ["d1", "d2", "d3"] {
        env.wait_secret(ns, "ecr-pull").await;
    }
    env.settle(QUIET).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_deleted_or_edited_managed_objects_are_restored() {
    let env = served().await;
    let original = env.secret("d1", "ecr-pull").unwrap();

    // Deleted by hand: restored.
    env.k8s.delete("secrets", Some("d1"), "ecr-pull").unwrap();
    let restored = env.wait_secret("d1", "ecr-pull").await;
    assert_eq!(restored["data"], original["data"]);
    assert_eq!(
        restored["metadata"]["labels"],
        original["metadata"]["labels"]
    );

    // Data edited by hand: restored.
    let mut edited = env.secret("d2", "ecr-pull").unwrap();
    let before = edited["data"].clone();
    edited["data"][DOCKERCONFIG_KEY] = json!(base64_of(
        r#"{"auths":{"evil.example.com":{"auth":"eDp5"}}}"#
    ));
    env.k8s.apply("secrets", edited).unwrap();
    wait_for("edited Secret restored", WAIT, || {
        let s = env.secret("d2", "ecr-pull").unwrap();
        if s["data"] == before {
            Ok(())
        } else {
            Err(format!("data {}", s["data"]))
        }
    })
    .await;

    // Our ServiceAccount entry removed by hand: put back.
    env.settle(QUIET).await;
    env.service_account("d3", "default", &[]);
    wait_until("SA entry restored", WAIT, || {
        env.pull_secrets("d3", "default") == ["ecr-pull"]
    })
    .await;
    env.wait_ready("cr").await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_one_cluster_wide_stream_per_kind() {
    let env = served().await;
    // More namespaces must not mean more watches.
    for ns in ["d4", "d5", "d6"] {
        env.namespace(ns, &[]).await;
    }
    for ns in ["d4", "d5", "d6"] {
        env.wait_secret(ns, "ecr-pull").await;
    }
    env.settle(QUIET).await;
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    // Besides the one object of the operator's own namespace it reads: the role grants.
    let role_grants = |r: &emulators::k8s::RequestRecord| {
        r.resource == "configmaps"
            && r.namespace.as_deref() == Some(OPERATOR_NAMESPACE)
            && r.query
                .contains(&format!("fieldSelector=metadata.name%3D{ROLE_GRANTS}"))
    };
    let watches = env.requests_where(|r| r.verb == "watch");
    assert_eq!(watches.iter().filter(|r| role_grants(r)).count(), 1);
    for r in watches.iter().filter(|r| !role_grants(r)) {
        assert_eq!(
            r.namespace, None,
            "watch on {} {:?} is namespaced: {}?{}",
            r.resource, r.namespace, r.path, r.query
        );
        *per_kind.entry(r.resource.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        ["ecrpullsecrets", "namespaces", "secrets", "serviceaccounts"]
            .into_iter()
            .map(|k| (k.to_string(), 1))
            .collect();
    assert_eq!(per_kind, expected);
    // And the Secret watch selects only ours.
    let secret_watch = env.requests_where(|r| r.verb == "watch" && r.resource == "secrets");
    assert!(
        secret_watch[0].query.contains("labelSelector"),
        "{}",
        secret_watch[0].query
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rewrites_no_fresh_secret_and_calls_no_aws() {
    let mut env = served().await;
    let before: Vec<_> = ["d1", "d2", "d3"]
        .iter()
        .map(|ns| env.secret(ns, "ecr-pull").unwrap())
        .collect();
    let calls = env.aws.calls().ecr;
    env.stop_operator().await;
    env.k8s.clear_requests();

    env.start_operator().await;
    wait_until("caches synced", WAIT, || env.operator().is_synced()).await;
    env.settle(QUIET).await;
    env.reconcile_directly("cr", 2).await;

    // The new operator listed and watched...
    assert!(!env.requests_where(|r| r.verb == "list").is_empty());
    // ...and wrote nothing.
    for kind in ["secrets", "serviceaccounts", "ecrpullsecrets", "events"] {
        assert!(
            env.writes_of(kind).is_empty(),
            "{kind} written after restart: {:?}",
            env.writes_of(kind)
        );
    }
    let after: Vec<_> = ["d1", "d2", "d3"]
        .iter()
        .map(|ns| env.secret(ns, "ecr-pull").unwrap())
        .collect();
    assert_eq!(before, after, "byte-for-byte, resourceVersion included");
    assert_eq!(
        env.aws.calls().ecr,
        calls,
        "no ECR call when nothing is due"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_that_change_nothing_write_nothing() {
    let env = served().await;
    let calls = env.aws.calls().ecr;
    env.k8s.clear_requests();

    // Irrelevant changes trigger reconciles through the watches.
    for (i, ns) in ["d1", "d2", "d3"].iter().enumerate() {
        let value = format!("v{i}");
        env.namespace(ns, &[("touched", &value)]).await;
    }
    env.settle(QUIET).await;
    env.reconcile_directly("cr", 3).await;

    let writes = env.requests_where(is_write);
    assert!(writes.is_empty(), "no-op reconciles wrote: {writes:?}");
    assert_eq!(env.aws.calls().ecr, calls);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_only_when_it_changes() {
    let env = served().await;
    let status_patches = |env: &Env| {
        env.requests_where(|r| {
            r.resource == "ecrpullsecrets"
                && r.subresource == "status"
                && r.name.as_deref() == Some("cr")
                && is_write(r)
        })
        .len()
    };
    env.k8s.clear_requests();
    let ltt = ready_condition(&env.get_cr("cr").unwrap()).unwrap()["lastTransitionTime"].clone();

    for round in 0..3 {
        let value = format!("r{round}");
        env.namespace("d1", &[("touched", &value)]).await;
        env.settle(QUIET).await;
        env.reconcile_directly("cr", 2).await;
    }
    assert_eq!(status_patches(&env), 0, "no-op reconciles patched status");

    // A real change is written (the count above is not blind).
    env.namespace("d4", &[]).await;
    wait_for("status counts the new namespace", WAIT, || {
        let cr = env.get_cr("cr").unwrap();
        if cr["status"]["syncedNamespaces"] == 4 {
            Ok(())
        } else {
            Err(cr["status"].to_string())
        }
    })
    .await;
    assert!(
        status_patches(&env) >= 1,
        "{:?}",
        env.writes_of("ecrpullsecrets")
    );
    let cr = env.get_cr("cr").unwrap();
    assert_eq!(
        ready_condition(&cr).unwrap()["lastTransitionTime"],
        ltt,
        "Ready stayed True: its transition time does not move"
    );
    env.shutdown().await;
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Regression: the reconcile our own Secret writes trigger could read the CR before the
/// watch delivered our status write, write status again (dropping lastRefreshTime) and
/// record a second "TokenFetched" event. The race hit about one start in ten, so this
/// runs several starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_writes_status_once_and_records_one_event() {
    for round in 0..6 {
        let env = served().await;
        let status_writes = env.requests_where(|r| {
            r.resource == "ecrpullsecrets" && r.subresource == "status" && is_write(r)
        });
        assert_eq!(status_writes.len(), 1, "round {round}: {status_writes:?}");
        assert_eq!(env.events_for("cr").len(), 1, "round {round}");
        let status = env.get_cr("cr").unwrap()["status"].clone();
        assert!(
            status["lastRefreshTime"].is_string(),
            "round {round}: {status}"
        );
        env.shutdown().await;
    }
}

/// Regression: a reconcile triggered by our own status write could read the Secret's old
/// resourceVersion from the cache (its watch event still on the way), fail the refresh
/// with 409 Conflict and flip Ready to False for a moment, with a Warning event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_racing_their_own_watch_events_report_no_failure() {
    let mut env = Env::emulators(Options {
        token_lifetime: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    for ns in ["q1", "q2", "q3", "q4"] {
        env.namespace(ns, &[]).await;
    }
    env.cr(
        "fast",
        json!({"secretName": "ecr-pull", "namespaces": ["q?"], "refresh": {"minInterval": "1s"}}),
    );
    env.start_operator().await;
    env.wait_ready("fast").await;
    let first = env.secret("q1", "ecr-pull").unwrap();
    // About five refreshes; Ready must hold through all of them.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let ready = env.ready("fast").unwrap();
        assert_eq!(ready["status"], "True", "{ready}");
        tokio::time::sleep(POLL).await;
    }
    assert_ne!(env.secret("q1", "ecr-pull").unwrap()["data"], first["data"]);
    let warnings: Vec<_> = env
        .events_for("fast")
        .into_iter()
        .filter(|e| e["type"] == "Warning")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    env.shutdown().await;
}
