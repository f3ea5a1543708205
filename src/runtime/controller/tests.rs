use super::*;
use crate::runtime::metrics::recording::Recording;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fake reconcile that records each run's key, start and end, takes `work` time,
/// and answers from a per-key script (the last answer repeats).
#[derive(Clone, Default)]
struct Fake {
    runs: Arc<Mutex<Vec<(u32, Instant, Instant)>>>,
    script: Arc<Mutex<HashMap<u32, Vec<Answer>>>>,
    running: Arc<Mutex<(usize, usize)>>, // (now, max)
    work: Duration,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok(Action),
    Fail,
    Panic,
}

impl Fake {
    fn with_work(work: Duration) -> Fake {
        Fake {
            work,
            ..Fake::default()
        }
    }

    fn script(&self, key: u32, answers: &[Answer]) {
        self.script.lock().unwrap().insert(key, answers.to_vec());
    }

    fn reconcile(&self) -> impl Fn(u32) -> ReconcileFut + Send + Sync + 'static {
        let fake = self.clone();
        move |key| {
            let fake = fake.clone();
            Box::pin(async move {
                let start = Instant::now();
                {
                    let mut r = fake.running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                tokio::time::sleep(fake.work).await;
                fake.running.lock().unwrap().0 -= 1;
                fake.runs.lock().unwrap().push((key, start, Instant::now()));
                let answer = {
                    let mut s = fake.script.lock().unwrap();
                    let answers = s.entry(key).or_default();
                    if answers.len() > 1 {
                        answers.remove(0)
                    } else {
                        answers
                            .first()
                            .copied()
                            .unwrap_or(Answer::Ok(Action::AwaitChange))
                    }
                };
                match answer {
                    Answer::Ok(a) => Ok(a),
                    Answer::Fail => Err("fake failure".to_string()),
                    Answer::Panic => panic!("fake panic"),
                }
            })
        }
    }

    fn starts(&self, key: u32) -> Vec<Instant> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == key)
            .map(|r| r.1)
            .collect()
    }

    fn runs(&self) -> Vec<(u32, Instant, Instant)> {
        self.runs.lock().unwrap().clone()
    }
}

type ReconcileFut =
    std::pin::Pin<Box<dyn Future<Output = Result<Action, String>> + Send + 'static>>;

struct Running {
    queue: WorkQueue<u32>,
    stop: watch::Sender<bool>,
    controller: Controller,
}

fn start(fake: &Fake, workers: usize) -> Running {
    let queue = WorkQueue::with_failure_backoff(secs(1), secs(300));
    let (stop, shutdown) = watch::channel(false);
    let controller = spawn_controller(
        queue.clone(),
        ControllerConfig::new("test", workers),
        fake.reconcile(),
        async {},
        shutdown,
    );
    Running {
        queue,
        stop,
        controller,
    }
}

#[tokio::test(start_paused = true)]
async fn success_forgets_and_await_change_does_not_requeue() {
    let fake = Fake::default();
    fake.script(1, &[Answer::Fail, Answer::Ok(Action::AwaitChange)]);
    let r = start(&fake, 1);
    r.queue.add(1);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(fake.starts(1).len(), 2);
    assert_eq!(
        r.queue.failures(&1),
        0,
        "success did not forget the failures"
    );
    tokio::time::sleep(secs(3600)).await;
    assert_eq!(fake.starts(1).len(), 2, "AwaitChange requeued");
    assert_eq!(r.controller.stats.reconciles(), 1);
    assert_eq!(r.controller.stats.failures(), 1);
}

#[tokio::test(start_paused = true)]
async fn error_requeues_with_doubling_backoff() {
    let fake = Fake::default();
    fake.script(
        1,
        &[
            Answer::Fail,
            Answer::Fail,
            Answer::Fail,
            Answer::Ok(Action::AwaitChange),
        ],
    );
    let r = start(&fake, 1);
    r.queue.add(1);
    tokio::time::sleep(secs(60)).await;
    let at = fake.starts(1);
    assert_eq!(at.len(), 4);
    let gaps: Vec<_> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, vec![secs(1), secs(2), secs(4)]);
    assert_eq!(r.queue.failures(&1), 0);
}

#[tokio::test(start_paused = true)]
async fn requeue_is_measured_from_the_end_of_reconcile() {
    let fake = Fake::with_work(secs(10));
    fake.script(1, &[Answer::Ok(Action::Requeue(secs(60)))]);
    let r = start(&fake, 1);
    r.queue.add(1);
    tokio::time::sleep(secs(160)).await;
    let runs = fake.runs();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1].1 - runs[0].2, secs(60));
    assert_eq!(runs[1].1 - runs[0].1, secs(70));
}

#[tokio::test(start_paused = true)]
async fn workers_are_bounded() {
    let fake = Fake::with_work(secs(1));
    let r = start(&fake, 2);
    for k in 0..5 {
        r.queue.add(k);
    }
    tokio::time::sleep(secs(10)).await;
    assert_eq!(fake.runs().len(), 5);
    assert_eq!(fake.running.lock().unwrap().1, 2);
    let last_end = fake.runs().iter().map(|r| r.2).max().unwrap();
    let first_start = fake.runs().iter().map(|r| r.1).min().unwrap();
    assert_eq!(last_end - first_start, secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_key_is_never_reconciled_concurrently_with_itself() {
    let fake = Fake::with_work(secs(5));
    let r = start(&fake, 4);
    r.queue.add(1);
    tokio::time::sleep(secs(1)).await;
    r.queue.add(1);
    r.queue.add(1);
    tokio::time::sleep(secs(20)).await;
    let runs = fake.runs();
    assert_eq!(
        runs.len(),
        2,
        "changes during a reconcile collapse into one rerun"
    );
    assert!(runs[1].1 >= runs[0].2, "overlapping reconciles of one key");
    assert_eq!(fake.running.lock().unwrap().1, 1);
}

#[tokio::test(start_paused = true)]
async fn panic_in_reconcile_is_a_failure_and_the_worker_survives() {
    let fake = Fake::default();
    fake.script(1, &[Answer::Panic, Answer::Ok(Action::AwaitChange)]);
    let r = start(&fake, 1);
    r.queue.add(1);
    tokio::time::sleep(secs(5)).await;
    assert_eq!(fake.starts(1).len(), 2);
    assert_eq!(r.controller.stats.failures(), 1);
    r.queue.add(2);
    tokio::time::sleep(secs(1)).await;
    assert_eq!(fake.starts(2).len(), 1, "the worker died with the panic");
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_reconciles_in_flight() {
    let fake = Fake::with_work(secs(5));
    let r = start(&fake, 2);
    r.queue.add(1);
    r.queue.add(2);
    r.queue.add(3);
    tokio::time::sleep(secs(1)).await;
    let asked = Instant::now();
    r.stop.send(true).unwrap();
    let report = r.controller.task.await.unwrap();
    assert_eq!(
        asked.elapsed(),
        secs(4),
        "did not wait for the reconciles in flight"
    );
    assert_eq!(
        report,
        ControllerReport {
            reconciles: 2,
            failures: 0
        }
    );
    // Key 3 was queued but not started: it is not started during shutdown.
    assert_eq!(fake.starts(3).len(), 0);
    assert_eq!(r.controller.stats.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_reconciled_before_ready() {
    let fake = Fake::default();
    let queue = WorkQueue::new();
    let (_stop, shutdown) = watch::channel(false);
    let (synced_tx, mut synced_rx) = watch::channel(false);
    let _c = spawn_controller(
        queue.clone(),
        ControllerConfig::new("test", 1),
        fake.reconcile(),
        async move {
            let _ = synced_rx.wait_for(|s| *s).await;
        },
        shutdown,
    );
    queue.add(1);
    tokio::time::sleep(secs(30)).await;
    assert!(
        fake.runs().is_empty(),
        "reconciled before the caches synced"
    );
    synced_tx.send(true).unwrap();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(fake.starts(1).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_ready_returns_an_empty_report() {
    let fake = Fake::default();
    let (stop, shutdown) = watch::channel(false);
    let c = spawn_controller(
        WorkQueue::<u32>::new(),
        ControllerConfig::new("test", 1),
        fake.reconcile(),
        std::future::pending(),
        shutdown,
    );
    stop.send(true).unwrap();
    assert_eq!(c.task.await.unwrap(), ControllerReport::default());
}

#[tokio::test(start_paused = true)]
async fn aborting_the_controller_aborts_reconciles() {
    let fake = Fake::with_work(secs(100));
    let r = start(&fake, 1);
    r.queue.add(1);
    tokio::time::sleep(secs(1)).await;
    r.controller.task.abort();
    tokio::time::sleep(secs(200)).await;
    assert!(fake.runs().is_empty(), "the reconcile ran on after abort");
}

#[tokio::test(start_paused = true)]
async fn every_reconcile_reaches_the_metrics_handed_in() {
    let fake = Fake::default();
    fake.script(
        1,
        &[Answer::Fail, Answer::Panic, Answer::Ok(Action::AwaitChange)],
    );
    let metrics = Recording::default();
    let queue = WorkQueue::with_failure_backoff(secs(1), secs(300));
    let (_stop, shutdown) = watch::channel(false);
    let c = spawn_controller(
        queue.clone(),
        ControllerConfig::new("test", 1).with_metrics(metrics.handle()),
        fake.reconcile(),
        async {},
        shutdown,
    );
    queue.add(1);
    tokio::time::sleep(secs(10)).await;
    assert_eq!(metrics.count("reconcile_started test"), 3);
    assert_eq!(metrics.count("reconcile_finished test false"), 2);
    assert_eq!(metrics.count("reconcile_finished test true"), 1);
    assert_eq!((c.stats.reconciles(), c.stats.failures()), (1, 2));
}
