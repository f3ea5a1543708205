//! The reflector and controller against the Kubernetes emulator on loopback, through the
//! real client: pagination, watch, relist after 410 (as an ERROR event and as an HTTP
//! status), keys flowing from watch events into reconciles, and no event lost across
//! dropped watches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::k8s::kind::SECRETS;
use crate::k8s::types::Secret;
use crate::k8s::{Client, ClientConfig};
use crate::runtime::controller::{spawn_controller, Action, ControllerConfig};
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::watcher::{spawn_reflector, Event, KubeListWatch, WatcherConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use emulators::wait::{wait_until, WAIT};
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// What the test caches of a Secret: its `app` label only.
type Projection = Option<String>;

fn project(s: &Secret) -> Option<Projection> {
    Some(s.metadata.labels.get("app").cloned())
}

fn secret(ns: &str, name: &str, app: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "data": {"k": "dmFsdWU="}
    })
}

async fn emulator() -> K8sEmulator {
    K8sEmulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

fn list_watch(emu: &K8sEmulator) -> KubeListWatch {
    let client = Client::new(ClientConfig::new(&emu.url()).unwrap()).unwrap();
    KubeListWatch {
        client,
        collection: SECRETS.collection(None),
        label_selector: None,
        field_selector: None,
    }
}

struct Reflector {
    store: Store<Projection>,
    events: mpsc::UnboundedReceiver<Event<Secret>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn reflect(emu: &K8sEmulator) -> Reflector {
    let (tx, events) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let (store, task) = spawn_reflector(
        list_watch(emu),
        WatcherConfig::new("secrets"),
        project,
        move |e| {
            let _ = tx.send(e);
        },
        shutdown,
    );
    Reflector {
        store,
        events,
        stop,
        task,
    }
}

fn count_named(store: &Store<Projection>, ns: &str) -> usize {
    store
        .keys()
        .iter()
        .filter(|k| k.namespace.as_deref() == Some(ns))
        .count()
}

async fn next_restart(events: &mut mpsc::UnboundedReceiver<Event<Secret>>) -> Vec<ObjectKey> {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no Restarted event within 10 s")
            .expect("reflector gone");
        if let Event::Restarted(all) = e {
            return all;
        }
    }
}

#[tokio::test]
async fn reflector_lists_in_pages_of_500_then_follows_the_watch() {
    let emu = emulator().await;
    for i in 0..1100 {
        emu.apply("secrets", secret("default", &format!("s{i:04}"), "bulk"))
            .unwrap();
    }
    let mut r = reflect(&emu);
    tokio::time::timeout(Duration::from_secs(10), r.store.wait_synced())
        .await
        .expect("store synced");
    assert_eq!(count_named(&r.store, "default"), 1100);
    let first = next_restart(&mut r.events).await;
    assert_eq!(first.len(), 1100);

    let lists: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|q| q.verb == "list" && q.resource == "secrets")
        .collect();
    assert_eq!(lists.len(), 3, "1100 objects in pages of 500: {lists:?}");

    emu.apply("secrets", secret("kube-system", "fresh", "new"))
        .unwrap();
    let key = ObjectKey::namespaced("kube-system", "fresh");
    wait_until("the watch to deliver a new secret", WAIT, || {
        r.store.get(&key).is_some()
    })
    .await;
    assert_eq!(
        r.store.get(&key).as_deref(),
        Some(&Some("new".to_string())),
        "the projection kept the label"
    );

    emu.apply("secrets", secret("kube-system", "fresh", "changed"))
        .unwrap();
    wait_until("the watch to deliver a modification", WAIT, || {
        r.store.get(&key).as_deref() == Some(&Some("changed".to_string()))
    })
    .await;

    emu.delete("secrets", Some("kube-system"), "fresh").unwrap();
    wait_until("the watch to deliver a deletion", WAIT, || {
        r.store.get(&key).is_none()
    })
    .await;

    r.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("reflector stops on shutdown")
        .unwrap();
    emu.shutdown().await;
}

/// While the reflector cannot reach the server, an object is deleted and the history
/// compacted: the re-watch gets 410, the relist swaps the store and the deleted object
/// is gone from it although no DELETED event was ever seen.
async fn relist_after_compaction(expired_as_http_status: bool) {
    let emu = emulator().await;
    emu.set_expired_as_http_status(expired_as_http_status);
    emu.apply("secrets", secret("default", "stays", "a"))
        .unwrap();
    emu.apply("secrets", secret("default", "goes", "a"))
        .unwrap();
    let mut r = reflect(&emu);
    assert_eq!(next_restart(&mut r.events).await.len(), 2);
    // Let the watch open.
    wait_until("the watch to open", WAIT, || {
        emu.requests()
            .iter()
            .any(|q| q.verb == "watch" && q.resource == "secrets")
    })
    .await;

    let outage = {
        let restart = emu.restart_with_refusal(Duration::from_millis(1500));
        async move { restart.await.unwrap() }
    };
    let changes = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        emu.delete("secrets", Some("default"), "goes").unwrap();
        emu.apply("secrets", secret("default", "new", "b")).unwrap();
        emu.compact();
    };
    tokio::join!(outage, changes);

    let relisted = next_restart(&mut r.events).await;
    let mut names: Vec<_> = relisted.iter().map(|k| k.name.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["new", "stays"]);
    let keys: Vec<_> = r
        .store
        .keys()
        .into_iter()
        .map(|k| k.name.to_string())
        .collect();
    assert_eq!(
        keys,
        vec!["new", "stays"],
        "relist did not drop what it missed"
    );
    assert!(r.store.is_synced());
    let watch_410s = emu
        .requests()
        .iter()
        .filter(|q| q.verb == "watch" && q.code == 410)
        .count();
    if expired_as_http_status {
        assert!(watch_410s >= 1, "the relist was not caused by an HTTP 410");
    } else {
        assert_eq!(watch_410s, 0, "expected the 410 inside the stream");
    }
    r.stop.send(true).unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn relist_after_410_error_event_drops_what_was_missed() {
    relist_after_compaction(false).await;
}

#[tokio::test]
async fn relist_after_410_http_status_drops_what_was_missed() {
    relist_after_compaction(true).await;
}

#[tokio::test]
async fn watch_events_drive_reconciles_of_their_keys() {
    let emu = emulator().await;
    emu.apply("secrets", secret("default", "one", "a")).unwrap();
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    let (stop, shutdown) = watch::channel(false);
    let enqueue = queue.clone();
    let (store, _reflector) = spawn_reflector(
        list_watch(&emu),
        WatcherConfig::new("secrets"),
        project,
        move |e: Event<Secret>| e.keys().into_iter().for_each(|k| enqueue.add(k)),
        shutdown.clone(),
    );
    let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let ready = {
        let store = store.clone();
        async move { store.wait_synced().await }
    };
    let controller = {
        let seen = Arc::clone(&seen);
        let store = store.clone();
        spawn_controller(
            queue.clone(),
            ControllerConfig::new("secrets", 2),
            move |key: ObjectKey| {
                let seen = Arc::clone(&seen);
                // The reconcile reads the cache the event went through first.
                let cached = store.get(&key).is_some();
                async move {
                    let label = if cached { "present" } else { "absent" };
                    *seen
                        .lock()
                        .unwrap()
                        .entry(format!("{key}:{label}"))
                        .or_default() += 1;
                    Ok::<_, String>(Action::AwaitChange)
                }
            },
            ready,
            shutdown,
        )
    };
    wait_until("the listed secret to be reconciled", WAIT, || {
        seen.lock().unwrap().contains_key("default/one:present")
    })
    .await;
    emu.apply("secrets", secret("kube-system", "two", "b"))
        .unwrap();
    wait_until("the watched secret to be reconciled", WAIT, || {
        seen.lock().unwrap().contains_key("kube-system/two:present")
    })
    .await;
    emu.delete("secrets", Some("default"), "one").unwrap();
    wait_until(
        "the deletion to be reconciled with the cache already updated",
        WAIT,
        || seen.lock().unwrap().contains_key("default/one:absent"),
    )
    .await;

    stop.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), controller.task)
        .await
        .expect("controller drains and stops")
        .unwrap();
    assert_eq!(report.failures, 0);
    assert!(report.reconciles >= 3, "{report:?}");
    emu.shutdown().await;
}

/// Every Secret created while watches keep being dropped is seen by the reflector, and
/// the cache ends equal to the server's state.
#[tokio::test]
async fn no_event_is_lost_across_dropped_watches() {
    let emu = K8sEmulator::start(EmulatorConfig::default()).await.unwrap();
    let c = Client::new(ClientConfig::new(&emu.url()).unwrap()).unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let seen_in = seen.clone();
    let (store, _task) = spawn_reflector(
        KubeListWatch {
            client: c.clone(),
            collection: SECRETS.collection(None),
            label_selector: None,
            field_selector: None,
        },
        WatcherConfig::new("secrets"),
        |s: &Secret| s.metadata.name.clone(),
        move |e: Event<Secret>| {
            let mut seen = seen_in.lock().unwrap();
            match e {
                Event::Applied(s) => {
                    seen.insert(s.metadata.name.unwrap_or_default());
                }
                Event::Restarted(all) => {
                    for s in all {
                        seen.insert(s.name.to_string());
                    }
                }
                Event::Deleted(_) => {}
            }
        },
        stop_rx,
    );
    store.wait_synced().await;
    for i in 0..60 {
        // Other users' Secrets, written by the admin in-process: the operator's own
        // identity may not create Opaque Secrets (deploy/admission-policy.yaml).
        emu.apply(
            "secrets",
            json!({"metadata": {"name": format!("s{i:02}"), "namespace": "default"}, "type": "Opaque"}),
        )
        .unwrap();
        if i % 7 == 0 {
            emu.drop_watches();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until("every created Secret to reach the cache", WAIT, || {
        store.len() == 60
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let expected: BTreeSet<String> = (0..60).map(|i| format!("s{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "every creation was delivered as an event or a relist"
    );
    let watches = emu.requests().iter().filter(|r| r.verb == "watch").count();
    assert!(
        watches > 1,
        "the watch was re-established ({watches} watches)"
    );
    stop_tx.send(true).unwrap();
    emu.shutdown().await;
}
