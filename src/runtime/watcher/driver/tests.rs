use super::*;
use crate::runtime::metrics::recording::Recording;
use crate::runtime::watcher::fixtures::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::mpsc;

#[test]
fn watch_timeout_is_jittered_below_290() {
    let mut rng = SplitMix64::with_seed(1);
    let all: Vec<_> = (0..200).map(|_| jittered_timeout(290, &mut rng)).collect();
    assert!(all.iter().all(|t| (261..=290).contains(t)), "{all:?}");
    assert!(all.iter().any(|t| *t != all[0]), "no jitter at all");
    assert_eq!(jittered_timeout(0, &mut rng), 1);
}

// === the driver, against a fake API ===

type Events = mpsc::UnboundedSender<Result<WatchEvent<Obj>, FakeError>>;

#[derive(Default)]
struct Script {
    lists: VecDeque<Result<ObjectList<Obj>, FakeError>>,
    watches: VecDeque<Result<FakeStream, FakeError>>,
    list_calls: Vec<(PageRequest, Instant)>,
    watch_calls: Vec<(WatchRequest, Instant)>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

struct FakeStream(mpsc::UnboundedReceiver<Result<WatchEvent<Obj>, FakeError>>);

impl Fake {
    fn list(&self, r: Result<ObjectList<Obj>, FakeError>) {
        self.0.lock().unwrap().lists.push_back(r);
    }

    /// Scripts a successful watch; events are sent through the returned sender,
    /// and dropping it ends the stream cleanly.
    fn watch_ok(&self) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0.lock().unwrap().watches.push_back(Ok(FakeStream(rx)));
        tx
    }

    fn watch_err(&self, code: u16) {
        self.0
            .lock()
            .unwrap()
            .watches
            .push_back(Err(FakeError(code)));
    }

    fn list_calls(&self) -> Vec<(PageRequest, Instant)> {
        self.0.lock().unwrap().list_calls.clone()
    }

    fn watch_calls(&self) -> Vec<(WatchRequest, Instant)> {
        self.0.lock().unwrap().watch_calls.clone()
    }
}

/// Unscripted calls never answer, so the driver parks instead of spinning.
async fn answer<R>(next: Option<R>) -> R {
    match next {
        Some(r) => r,
        None => std::future::pending().await,
    }
}

impl ListWatch<Obj> for Fake {
    type Error = FakeError;
    type Stream = FakeStream;

    fn list(
        &self,
        page: &PageRequest,
    ) -> impl Future<Output = Result<ObjectList<Obj>, FakeError>> + Send {
        let next = {
            let mut s = self.0.lock().unwrap();
            s.list_calls.push((page.clone(), Instant::now()));
            s.lists.pop_front()
        };
        answer(next)
    }

    fn watch(
        &self,
        req: &WatchRequest,
    ) -> impl Future<Output = Result<FakeStream, FakeError>> + Send {
        let next = {
            let mut s = self.0.lock().unwrap();
            s.watch_calls.push((req.clone(), Instant::now()));
            s.watches.pop_front()
        };
        answer(next)
    }

    fn is_gone(e: &FakeError) -> bool {
        e.0 == 410
    }
}

impl EventStream<Obj> for FakeStream {
    type Error = FakeError;

    async fn next_event(&mut self) -> Option<Result<WatchEvent<Obj>, FakeError>> {
        self.0.recv().await
    }
}

struct Running {
    store: Store<u32>,
    events: mpsc::UnboundedReceiver<Event<Obj>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<WatcherStats>,
}

/// Runs a reflector that caches `v` of objects whose `v` is not 0.
fn run(fake: &Fake) -> Running {
    run_with(fake, WatcherConfig::new("test"))
}

fn run_with(fake: &Fake, config: WatcherConfig) -> Running {
    let (tx, events) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let stats = Arc::clone(&config.stats);
    let (store, task) = spawn_reflector(
        fake.clone(),
        config,
        |o: &Obj| (o.v != 0).then_some(o.v),
        move |e| {
            let _ = tx.send(e);
        },
        shutdown,
    );
    Running {
        store,
        events,
        stop,
        task,
        stats,
    }
}

/// Lets the driver run until it waits on something.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn stored(store: &Store<u32>) -> Vec<(String, u32)> {
    store
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k.name.to_string(), *v))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn reflector_lists_all_pages_then_follows_the_watch() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![obj("a", "1", 1)], Some("10"), Some("c1"))));
    fake.list(Ok(page(vec![], Some("10"), Some("c2"))));
    fake.list(Ok(page(vec![obj("b", "2", 2)], Some("10"), None)));
    let w1 = fake.watch_ok();
    let w2 = fake.watch_ok();
    let mut r = run(&fake);

    r.store.wait_synced().await;
    match r.events.recv().await.unwrap() {
        Event::Restarted(all) => assert_eq!(key_names(&all), vec!["a", "b"]),
        other => panic!("expected Restarted, got {other:?}"),
    }
    assert_eq!(stored(&r.store), vec![("a".into(), 1), ("b".into(), 2)]);
    let pages: Vec<_> = fake.list_calls().into_iter().map(|(p, _)| p).collect();
    assert!(pages.iter().all(|p| p.limit == PAGE_SIZE));
    let tokens: Vec<_> = pages.iter().map(|p| p.continue_token.as_deref()).collect();
    assert_eq!(tokens, vec![None, Some("c1"), Some("c2")]);

    settle().await;
    let (first, _) = fake.watch_calls()[0].clone();
    assert_eq!(first.resource_version, "10");
    assert!((261..=290).contains(&first.timeout_seconds), "{first:?}");

    w1.send(Ok(WatchEvent::Added(obj("c", "11", 3)))).unwrap();
    assert!(matches!(r.events.recv().await.unwrap(), Event::Applied(o) if o.v == 3));
    w1.send(Ok(WatchEvent::Deleted(obj("a", "12", 1)))).unwrap();
    assert!(matches!(r.events.recv().await.unwrap(), Event::Deleted(_)));
    assert_eq!(stored(&r.store), vec![("b".into(), 2), ("c".into(), 3)]);

    // A bookmark moves the version without an event; a clean end re-watches from it.
    w1.send(Ok(WatchEvent::Bookmark {
        resource_version: "15".into(),
    }))
    .unwrap();
    let ended = Instant::now();
    drop(w1);
    settle().await;
    let calls = fake.watch_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0.resource_version, "15");
    assert_eq!(calls[1].1, ended, "a clean end must not back off");
    assert_eq!(fake.list_calls().len(), 3, "a clean end must not relist");
    assert!(r.events.try_recv().is_err(), "a bookmark was emitted");

    w2.send(Ok(WatchEvent::Modified(obj("b", "16", 20))))
        .unwrap();
    assert!(matches!(r.events.recv().await.unwrap(), Event::Applied(o) if o.v == 20));
    assert_eq!(
        r.store.get(&ObjectKey::namespaced("ns", "b")).as_deref(),
        Some(&20)
    );
    r.stop.send(true).unwrap();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn gone_error_event_relists_and_swaps_the_store() {
    let fake = Fake::default();
    fake.list(Ok(page(
        vec![obj("a", "1", 1), obj("b", "2", 2)],
        Some("5"),
        None,
    )));
    fake.list(Ok(page(
        vec![obj("b", "7", 22), obj("c", "8", 3)],
        Some("20"),
        None,
    )));
    let w1 = fake.watch_ok();
    let _w2 = fake.watch_ok();
    let mut r = run(&fake);
    assert!(matches!(
        r.events.recv().await.unwrap(),
        Event::Restarted(_)
    ));
    settle().await;
    let failed_at = Instant::now();
    w1.send(Ok(WatchEvent::Error(status(410, "Expired"))))
        .unwrap();
    match r.events.recv().await.unwrap() {
        Event::Restarted(all) => assert_eq!(key_names(&all), vec!["b", "c"]),
        other => panic!("expected Restarted, got {other:?}"),
    }
    // Whatever the relist did not return is gone.
    assert_eq!(stored(&r.store), vec![("b".into(), 22), ("c".into(), 3)]);
    let lists = fake.list_calls();
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[1].0.continue_token, None);
    let waited = lists[1].1 - failed_at;
    assert!(
        waited >= Duration::from_millis(600) && waited <= Duration::from_millis(800),
        "{waited:?}"
    );
    settle().await;
    assert_eq!(fake.watch_calls()[1].0.resource_version, "20");
    assert_eq!(r.stats.lists(), 2);
    assert_eq!(r.stats.failures(), 1);
    assert_eq!(r.stats.events(), 0);
    drop(r.stop);
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn watch_start_410_relists() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![obj("a", "1", 1)], Some("5"), None)));
    fake.list(Ok(page(vec![], Some("9"), None)));
    fake.watch_err(410);
    let mut r = run(&fake);
    assert!(matches!(r.events.recv().await.unwrap(), Event::Restarted(v) if v.len() == 1));
    assert!(matches!(r.events.recv().await.unwrap(), Event::Restarted(v) if v.is_empty()));
    assert!(r.store.is_empty());
    assert!(r.store.is_synced(), "a relist must not unsync the store");
}

#[tokio::test(start_paused = true)]
async fn expired_continue_token_restarts_the_list() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![obj("stale", "1", 1)], None, Some("c1"))));
    fake.list(Err(FakeError(410)));
    fake.list(Ok(page(vec![obj("fresh", "3", 1)], Some("3"), None)));
    let mut r = run(&fake);
    match r.events.recv().await.unwrap() {
        Event::Restarted(all) => assert_eq!(key_names(&all), vec!["fresh"]),
        other => panic!("expected Restarted, got {other:?}"),
    }
    let tokens: Vec<_> = fake
        .list_calls()
        .into_iter()
        .map(|(p, _)| p.continue_token)
        .collect();
    assert_eq!(tokens, vec![None, Some("c1".into()), None]);
}

#[tokio::test(start_paused = true)]
async fn watch_errors_back_off_doubling() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![], Some("1"), None)));
    for _ in 0..4 {
        fake.watch_err(500);
    }
    let _w = fake.watch_ok();
    let r = run(&fake);
    r.store.wait_synced().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let at: Vec<_> = fake.watch_calls().into_iter().map(|(_, t)| t).collect();
    assert_eq!(at.len(), 5);
    // 0.8, 1.6, 3.2, 6.4 s, each shortened by at most a quarter.
    for (i, base) in [0.8, 1.6, 3.2, 6.4].into_iter().enumerate() {
        let gap = (at[i + 1] - at[i]).as_secs_f64();
        assert!(
            gap <= base + 1e-3 && gap >= base * 0.75 - 1e-3,
            "gap {i}: {gap} for {base}"
        );
    }
    // Every retry started from the same version: no relist for a plain error.
    assert_eq!(fake.list_calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_two_minutes_of_health() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![], Some("1"), None)));
    fake.watch_err(500);
    fake.watch_err(500);
    let w = fake.watch_ok();
    let _w2 = fake.watch_ok();
    let r = run(&fake);
    r.store.wait_synced().await;
    tokio::time::sleep(Duration::from_secs(130)).await;
    assert_eq!(fake.watch_calls().len(), 3);
    let failed_at = Instant::now();
    w.send(Err(FakeError(500))).unwrap();
    settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = fake.watch_calls();
    assert_eq!(calls.len(), 4);
    // Without the reset this would be 3.2 s (minus jitter).
    let gap = calls[3].1 - failed_at;
    assert!(gap <= Duration::from_millis(801), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_stream_is_abandoned_after_timeout_and_slack() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![], Some("4"), None)));
    let _silent = fake.watch_ok();
    let _w2 = fake.watch_ok();
    let r = run(&fake);
    r.store.wait_synced().await;
    settle().await;
    let opened = fake.watch_calls()[0].1;
    tokio::time::sleep(Duration::from_secs(400)).await;
    let calls = fake.watch_calls();
    assert_eq!(calls.len(), 2);
    let gap = calls[1].1 - opened;
    let idle = Duration::from_secs(u64::from(WATCH_TIMEOUT_SECS)) + IDLE_SLACK;
    assert!(
        gap >= idle && gap <= idle + Duration::from_millis(800),
        "{gap:?}"
    );
    assert_eq!(calls[1].0.resource_version, "4");
}

#[tokio::test(start_paused = true)]
async fn streams_closed_at_once_are_backed_off() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![], Some("4"), None)));
    for _ in 0..3 {
        drop(fake.watch_ok());
    }
    let r = run(&fake);
    r.store.wait_synced().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let at: Vec<_> = fake.watch_calls().into_iter().map(|(_, t)| t).collect();
    assert_eq!(at.len(), 4);
    assert!(
        at[1] - at[0] >= Duration::from_millis(600),
        "hot loop: {at:?}"
    );
    assert!(
        at[2] - at[1] >= Duration::from_millis(1200),
        "hot loop: {at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn projection_none_drops_the_object_from_the_store() {
    let fake = Fake::default();
    let mut nameless = obj("x", "1", 5);
    nameless.metadata.name = None;
    fake.list(Ok(page(
        vec![obj("a", "1", 1), obj("z", "1", 0), nameless],
        Some("1"),
        None,
    )));
    let w = fake.watch_ok();
    let mut r = run(&fake);
    r.events.recv().await.unwrap();
    assert_eq!(stored(&r.store), vec![("a".into(), 1)]);
    w.send(Ok(WatchEvent::Modified(obj("a", "2", 0)))).unwrap();
    // The caller still hears about it: the object changed.
    assert!(matches!(r.events.recv().await.unwrap(), Event::Applied(_)));
    assert!(r.store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_reflector_even_while_backing_off() {
    let fake = Fake::default();
    fake.list(Err(FakeError(500)));
    let r = run(&fake);
    settle().await;
    assert_eq!(fake.list_calls().len(), 1);
    r.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_millis(10), r.task)
        .await
        .expect("reflector ignored shutdown")
        .unwrap();
    assert!(!r.store.is_synced());
}

#[tokio::test(start_paused = true)]
async fn lists_events_and_failures_reach_the_metrics_handed_in() {
    let fake = Fake::default();
    fake.list(Ok(page(vec![obj("a", "1", 1)], Some("5"), None)));
    fake.list(Ok(page(vec![], Some("9"), None)));
    let w = fake.watch_ok();
    let _w2 = fake.watch_ok();
    let metrics = Recording::default();
    let config = WatcherConfig::new("test").with_metrics(metrics.handle());
    let mut r = run_with(&fake, config);
    r.events.recv().await.unwrap();
    settle().await;
    w.send(Ok(WatchEvent::Added(obj("b", "6", 2)))).unwrap();
    r.events.recv().await.unwrap();
    w.send(Ok(WatchEvent::Error(status(410, "Expired"))))
        .unwrap();
    r.events.recv().await.unwrap();
    assert_eq!(
        metrics.lines(),
        vec![
            "watch_listed test",
            "watch_event test",
            "watch_failed test true",
            "watch_listed test",
        ]
    );
    assert_eq!(
        (r.stats.lists(), r.stats.events(), r.stats.failures()),
        (2, 1, 1)
    );
}
