use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Per key started, a receiver whose sender the watch task holds.
type Alive = Arc<Mutex<Vec<(String, mpsc::Receiver<()>)>>>;

/// A set whose watches do nothing but hold a sender: a closed receiver means the watch
/// task is gone. Counts the starts.
fn counting_set() -> (WatchSet<String, usize>, Arc<AtomicUsize>, Alive) {
    let starts = Arc::new(AtomicUsize::new(0));
    let alive = Arc::new(Mutex::new(Vec::new()));
    let (s, a) = (starts.clone(), alive.clone());
    let set = WatchSet::new(move |key: &String| {
        let n = s.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel::<()>(1);
        a.lock().unwrap().push((key.clone(), rx));
        let task = tokio::spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        (n, task)
    });
    (set, starts, alive)
}

/// Whether the watch task of `key` has ended (its sender dropped).
async fn ended(alive: &Mutex<Vec<(String, mpsc::Receiver<()>)>>, key: &str) -> bool {
    tokio::task::yield_now().await;
    let mut alive = alive.lock().unwrap();
    let (_, rx) = alive.iter_mut().find(|(k, _)| k == key).unwrap();
    rx.try_recv() == Err(mpsc::error::TryRecvError::Disconnected)
}

#[tokio::test]
async fn a_key_is_started_once_and_shared() {
    let (set, starts, _alive) = counting_set();
    assert_eq!(set.get(&"a".to_string()), 0);
    assert_eq!(set.get(&"a".to_string()), 0);
    assert_eq!(set.clone().get(&"b".to_string()), 1);
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    assert_eq!(set.len(), 2);
}

#[tokio::test]
async fn peek_starts_nothing() {
    let (set, starts, _alive) = counting_set();
    assert_eq!(set.peek(&"a".to_string()), None);
    assert_eq!(set.len(), 0);
    assert_eq!(starts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn retain_stops_the_pruned_watches_only() {
    let (set, _starts, alive) = counting_set();
    set.get(&"keep".to_string());
    set.get(&"drop".to_string());
    set.retain(|k, _| k == "keep");
    assert!(ended(&alive, "drop").await);
    assert!(!ended(&alive, "keep").await);
    assert_eq!(set.values(), vec![0]);
}

#[tokio::test]
async fn a_pruned_key_starts_afresh() {
    let (set, starts, _alive) = counting_set();
    set.get(&"a".to_string());
    set.retain(|_, _| false);
    assert_eq!(set.get(&"a".to_string()), 1);
    assert_eq!(starts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dropping_the_last_clone_stops_every_watch() {
    let (set, _starts, alive) = counting_set();
    let other = set.clone();
    set.get(&"a".to_string());
    drop(set);
    assert!(!ended(&alive, "a").await);
    drop(other);
    assert!(ended(&alive, "a").await);
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_changes_prunes_once_after_the_delay() {
    let changed = Arc::new(Notify::new());
    let prunes = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let p = prunes.clone();
    let task = spawn_pruner(
        changed.clone(),
        Duration::from_millis(500),
        move || {
            p.fetch_add(1, Ordering::SeqCst);
        },
        stop_rx,
    );
    for _ in 0..10 {
        changed.notify_one();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(prunes.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(prunes.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(prunes.load(Ordering::SeqCst), 1);
    stop_tx.send_replace(true);
    task.await.unwrap();
}
