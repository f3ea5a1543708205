//! Watch semantics: replay from a resourceVersion, initial state, 410 Expired in both forms,
//! bookmarks, selector-aware event types, timeouts and forced drops.

mod k8s_support;

use std::time::Duration;

use emulators::k8s::{EmulatorConfig, K8sEmulator, WatchLag};
use k8s_support::{admin_config, ev, Api};
use serde_json::{json, Value};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

async fn start_with(cfg: EmulatorConfig) -> (K8sEmulator, Api) {
    let emu = K8sEmulator::start(cfg).await.unwrap();
    let api = Api::new(emu.addr());
    (emu, api)
}

async fn start() -> (K8sEmulator, Api) {
    start_with(EmulatorConfig {
        bookmark_interval: None,
        ..admin_config()
    })
    .await
}

fn secret(name: &str, app: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {}})
}

fn pair(t: &str, n: &str) -> (String, String) {
    (t.to_string(), n.to_string())
}

#[tokio::test]
async fn watch_from_a_resource_version_replays_only_later_events() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a", "x")).await;
    let list = api.get(SECRETS).await.body;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.post(SECRETS, &secret("b", "x")).await;
    api.patch(
        &format!("{SECRETS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"n": "1"}}}),
    )
    .await;
    api.delete(&format!("{SECRETS}/b")).await;
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&resourceVersion={rv}"))
        .await;
    assert_eq!(w.code, 200);
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "b"));
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("MODIFIED", "a"));
    let del = w.next_change().await.unwrap();
    assert_eq!(ev(&del), pair("DELETED", "b"));
    // Live events follow the replay.
    api.post(SECRETS, &secret("c", "x")).await;
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "c"));
}

#[tokio::test]
async fn watch_from_zero_or_empty_sends_current_state_as_added_first() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a", "x")).await;
    api.post(SECRETS, &secret("b", "x")).await;
    for rv in ["0", ""] {
        let mut w = api
            .watch(&format!("{SECRETS}?watch=true&resourceVersion={rv}"))
            .await;
        assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "a"));
        assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "b"));
    }
}

#[tokio::test]
async fn too_old_resource_version_is_an_error_event_with_410_expired_then_close() {
    let (emu, api) = start().await;
    api.post(SECRETS, &secret("a", "x")).await;
    let old = emu.resource_version();
    api.post(SECRETS, &secret("b", "x")).await;
    emu.compact();
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&resourceVersion={}", old - 1))
        .await;
    assert_eq!(w.code, 200);
    let e = w.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["apiVersion"], "v1");
    assert_eq!(e["object"]["status"], "Failure");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(e["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {} (", old - 1)));
    assert!(
        w.next_within(Duration::from_secs(5)).await.is_none(),
        "stream closes after the error"
    );
}

#[tokio::test]
async fn too_old_resource_version_can_be_an_http_410() {
    let (emu, api) = start().await;
    let old = emu.resource_version();
    for i in 0..5 {
        api.post(SECRETS, &secret(&format!("s{i}"), "x")).await;
    }
    emu.set_history_size(2);
    emu.set_expired_as_http_status(true);
    let r = api
        .get(&format!("{SECRETS}?watch=1&resourceVersion={old}"))
        .await;
    assert_eq!(r.code, 410);
    assert_eq!(r.body["reason"], "Expired");
    // Inside the window still works.
    let recent = emu.resource_version() - 1;
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&resourceVersion={recent}"))
        .await;
    assert_eq!(w.code, 200);
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "s4"));
}

#[tokio::test]
async fn bookmarks_carry_only_the_current_resource_version() {
    let (emu, api) = start_with(EmulatorConfig {
        bookmark_interval: Some(Duration::from_millis(50)),
        ..admin_config()
    })
    .await;
    let mut w = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={}&allowWatchBookmarks=true",
            emu.resource_version()
        ))
        .await;
    api.post(
        "/api/v1/namespaces/kube-system/secrets",
        &secret("elsewhere", "x"),
    )
    .await;
    let mut seen = None;
    for _ in 0..10 {
        let e = w.next_within(Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "BOOKMARK");
        assert_eq!(e["object"]["kind"], "Secret");
        let meta = e["object"]["metadata"].as_object().unwrap();
        assert_eq!(meta.len(), 1, "only resourceVersion: {meta:?}");
        let rv: u64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
        seen = Some(rv);
        if rv == emu.resource_version() {
            break;
        }
    }
    assert_eq!(
        seen,
        Some(emu.resource_version()),
        "bookmarks advance past events in other namespaces"
    );
    // Without allowWatchBookmarks: none.
    let mut w = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={}&timeoutSeconds=1",
            emu.resource_version()
        ))
        .await;
    assert!(w.next_within(Duration::from_secs(5)).await.is_none());
}

#[tokio::test]
async fn label_selector_watch_turns_modifications_across_the_selector_into_added_and_deleted() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a", "web")).await;
    api.post(SECRETS, &secret("b", "db")).await;
    let rv = api.get(SECRETS).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb"
        ))
        .await;
    api.patch(
        &format!("{SECRETS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await;
    let e = w.next_change().await.unwrap();
    assert_eq!(ev(&e), pair("DELETED", "a"));
    assert_eq!(
        e["object"]["metadata"]["labels"]["app"], "db",
        "DELETED carries the new state"
    );
    api.patch(
        &format!("{SECRETS}/b"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await;
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "b"));
    api.patch(
        &format!("{SECRETS}/b"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("MODIFIED", "b"));
    // Changes outside the selector are invisible.
    api.patch(
        &format!("{SECRETS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    api.delete(&format!("{SECRETS}/b")).await;
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("DELETED", "b"));
}

#[tokio::test]
async fn all_namespaces_watch_sees_every_namespace() {
    let (emu, api) = start().await;
    let mut w = api
        .watch(&format!(
            "/api/v1/secrets?watch=1&resourceVersion={}",
            emu.resource_version()
        ))
        .await;
    api.post(SECRETS, &secret("a", "x")).await;
    api.post("/api/v1/namespaces/kube-system/secrets", &secret("b", "x"))
        .await;
    let e1 = w.next_change().await.unwrap();
    let e2 = w.next_change().await.unwrap();
    assert_eq!(e1["object"]["metadata"]["namespace"], "default");
    assert_eq!(e2["object"]["metadata"]["namespace"], "kube-system");
}

#[tokio::test]
async fn watch_ends_cleanly_at_timeout_seconds() {
    let (emu, api) = start().await;
    let t = std::time::Instant::now();
    let mut w = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={}&timeoutSeconds=1",
            emu.resource_version()
        ))
        .await;
    assert!(w.next_within(Duration::from_secs(5)).await.is_none());
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn drop_watches_ends_every_open_stream() {
    let (emu, api) = start().await;
    let mut w1 = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={}",
            emu.resource_version()
        ))
        .await;
    let mut w2 = api.watch("/api/v1/namespaces?watch=1").await;
    // w2 starts with the current namespaces.
    assert_eq!(w2.next_change().await.unwrap()["type"], "ADDED");
    tokio::time::sleep(Duration::from_millis(50)).await;
    emu.drop_watches();
    assert!(w1.next_within(Duration::from_secs(5)).await.is_none());
    while let Some(e) = w2.next_within(Duration::from_secs(5)).await {
        assert_eq!(e["type"], "ADDED");
    }
    // The server still serves new watches.
    let mut w3 = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={}",
            emu.resource_version()
        ))
        .await;
    api.post(SECRETS, &secret("a", "x")).await;
    assert_eq!(ev(&w3.next_change().await.unwrap()), pair("ADDED", "a"));
}

/// A watch resumed from an older resourceVersion under lag is still replaying (each event
/// waits out its lag) when the drop comes: it ends then, not after the replay.
#[tokio::test]
async fn drop_watches_ends_a_stream_still_replaying_under_lag() {
    let (emu, api) = start().await;
    let rv = emu.resource_version();
    api.post(SECRETS, &secret("a", "x")).await;
    emu.set_watch_lag(WatchLag {
        fixed_ms: 3000,
        ..WatchLag::default()
    });
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&resourceVersion={rv}"))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    emu.drop_watches();
    // Ended (None), with nothing sent: the replayed event was not due yet.
    assert!(w.next_within(Duration::from_secs(2)).await.is_none());
}

#[tokio::test]
async fn custom_resource_status_writes_are_modified_events() {
    let (emu, api) = start().await;
    let eps = "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets";
    let mut w = api
        .watch(&format!(
            "{eps}?watch=1&resourceVersion={}",
            emu.resource_version()
        ))
        .await;
    api.post(
        eps,
        &json!({"metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["default"]}}),
    )
    .await;
    api.patch(
        &format!("{eps}/p/status"),
        "application/merge-patch+json",
        &json!({"status": {"syncedNamespaces": 1}}),
    )
    .await;
    assert_eq!(ev(&w.next_change().await.unwrap()), pair("ADDED", "p"));
    let m = w.next_change().await.unwrap();
    assert_eq!(ev(&m), pair("MODIFIED", "p"));
    assert_eq!(m["object"]["status"]["syncedNamespaces"], 1);
    assert_eq!(m["object"]["kind"], "ECRPullSecret");
}

#[tokio::test]
async fn send_initial_events_streams_the_state_then_an_initial_events_end_bookmark() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a", "x")).await;
    let r = api
        .get(&format!("{SECRETS}?watch=1&sendInitialEvents=true"))
        .await;
    assert_eq!(r.code, 422, "needs allowWatchBookmarks");
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"))
        .await;
    assert_eq!(
        ev(&w.next_within(Duration::from_secs(5)).await.unwrap()),
        pair("ADDED", "a")
    );
    let b = w.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}
