use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::k8s::types::ApiStatus;
use crate::runtime::leader::fixtures::*;
use crate::runtime::metrics::recording::Recording;

// --- the runner, on paused time, against an in-memory lease with the API server's
// --- optimistic concurrency (resourceVersion checked on PUT, 409 on mismatch) ---

#[derive(Clone, Default)]
struct MemLease {
    state: Arc<Mutex<Option<Lease>>>,
    rv: Arc<AtomicU64>,
    /// Every call fails with 503 while set.
    failing: Arc<AtomicBool>,
    /// Every call hangs while set.
    hanging: Arc<AtomicBool>,
}

fn api_error(code: u16, reason: &str) -> crate::k8s::Error {
    crate::k8s::Error::Api {
        status: ApiStatus {
            status: "Failure".into(),
            message: String::new(),
            reason: reason.into(),
            code,
        },
    }
}

impl MemLease {
    async fn gate(&self) -> Result<(), crate::k8s::Error> {
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(api_error(503, "ServiceUnavailable"));
        }
        Ok(())
    }
    fn spec(&self) -> Option<LeaseSpec> {
        self.state.lock().unwrap().as_ref().map(|l| l.spec.clone())
    }
    fn next_rv(&self) -> String {
        (self.rv.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }
}

impl LeaseApi for MemLease {
    async fn get(&self) -> Result<Option<Lease>, crate::k8s::Error> {
        self.gate().await?;
        Ok(self.state.lock().unwrap().clone())
    }
    async fn create(&self, spec: &LeaseSpec) -> Result<Lease, crate::k8s::Error> {
        self.gate().await?;
        let mut state = self.state.lock().unwrap();
        if state.is_some() {
            return Err(api_error(409, "AlreadyExists"));
        }
        let mut lease = Lease {
            spec: spec.clone(),
            ..Lease::default()
        };
        lease.metadata.resource_version = Some(self.next_rv());
        *state = Some(lease.clone());
        Ok(lease)
    }
    async fn replace(&self, lease: &Lease) -> Result<Lease, crate::k8s::Error> {
        self.gate().await?;
        let mut state = self.state.lock().unwrap();
        let Some(cur) = state.as_ref() else {
            return Err(api_error(404, "NotFound"));
        };
        if cur.metadata.resource_version != lease.metadata.resource_version {
            return Err(api_error(409, "Conflict"));
        }
        let mut lease = lease.clone();
        lease.metadata.resource_version = Some(self.next_rv());
        *state = Some(lease.clone());
        Ok(lease)
    }
}

struct Running {
    leading: watch::Receiver<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), LeaderError>>,
}

fn spawn(api: &MemLease, id: &str) -> Running {
    let elector = LeaderElector::with_api(api.clone(), id, LeaseConfig::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (leading, task) = elector.spawn(async move {
        let _ = rx.await;
    });
    Running {
        leading,
        stop: Some(tx),
        task,
    }
}

async fn until(rx: &mut watch::Receiver<bool>, want: bool) -> Instant {
    rx.wait_for(|v| *v == want).await.unwrap();
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn first_candidate_creates_the_lease_and_leads() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    let spec = api.spec().unwrap();
    assert_eq!(spec.holder(), Some(ME));
    assert_eq!(spec.lease_transitions, Some(0));
    // Renewals keep coming every retry period.
    let rv = api.rv.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(api.rv.load(Ordering::SeqCst) >= rv + 3);
    assert!(*a.leading.borrow());
}

#[tokio::test(start_paused = true)]
async fn standby_waits_while_the_leader_renews() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    let b = spawn(&api, OTHER);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(*a.leading.borrow());
    assert!(!*b.leading.borrow());
    assert_eq!(api.spec().unwrap().holder(), Some(ME));
}

#[tokio::test(start_paused = true)]
async fn standby_takes_over_a_lease_duration_after_the_leader_goes_silent() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    let mut b = spawn(&api, OTHER);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The leader dies without releasing.
    a.task.abort();
    let last_change = Instant::now();
    let took_over = until(&mut b.leading, true).await;
    let waited = took_over - last_change;
    // Bounds: the leader's last renewal was at most one retry period (2 s) before
    // the abort, and expiry counts from the standby's sighting of it. The standby
    // sees it within one jittered retry (< 4.4 s) and acts within another after
    // expiry: 15 - 2 <= waited < 4.4 + 15 + 4.4.
    assert!(
        waited >= Duration::from_secs(13),
        "took over after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(23_800),
        "took over after {waited:?}"
    );
    let spec = api.spec().unwrap();
    assert_eq!(spec.holder(), Some(OTHER));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(start_paused = true)]
async fn leader_that_cannot_renew_steps_down_by_the_renew_deadline() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.failing.store(true, Ordering::SeqCst);
    let broke = Instant::now();
    let stepped_down = until(&mut a.leading, false).await;
    // Last success was at most one retry period before the failures began.
    assert!(
        stepped_down - broke <= Duration::from_secs(10),
        "{:?}",
        stepped_down - broke
    );
    assert!(
        stepped_down - broke >= Duration::from_secs(7),
        "{:?}",
        stepped_down - broke
    );
    // It campaigns again once the API answers, and wins back its own lease.
    api.failing.store(false, Ordering::SeqCst);
    until(&mut a.leading, true).await;
    assert_eq!(api.spec().unwrap().lease_transitions, Some(0));
}

#[tokio::test(start_paused = true)]
async fn leader_whose_api_calls_hang_still_steps_down_by_the_renew_deadline() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    api.hanging.store(true, Ordering::SeqCst);
    let hung = Instant::now();
    let stepped_down = until(&mut a.leading, false).await;
    assert!(
        stepped_down - hung <= Duration::from_secs(10),
        "{:?}",
        stepped_down - hung
    );
}

#[tokio::test(start_paused = true)]
async fn leader_steps_down_when_the_lease_was_taken_over() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    // Someone else overwrites the lease (e.g. after a network partition healed).
    {
        let mut state = api.state.lock().unwrap();
        let lease = state.as_mut().unwrap();
        lease.spec = held_by(OTHER, 1);
        lease.metadata.resource_version = Some("999".into());
    }
    let changed = Instant::now();
    let stepped_down = until(&mut a.leading, false).await;
    assert!(stepped_down - changed <= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_leading_then_releases_so_the_standby_takes_over_at_once() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    let mut b = spawn(&api, OTHER);
    tokio::time::sleep(Duration::from_secs(4)).await;

    a.stop.take().unwrap().send(()).unwrap();
    a.task.await.unwrap().unwrap();
    assert!(!*a.leading.borrow());
    let spec = api.spec().unwrap();
    assert_eq!(spec.holder(), None, "holder emptied on release");
    assert_eq!(spec.lease_transitions, Some(0));

    let released = Instant::now();
    let took_over = until(&mut b.leading, true).await;
    assert!(
        took_over - released <= Duration::from_secs(5),
        "{:?}",
        took_over - released
    );
    assert_eq!(api.spec().unwrap().lease_transitions, Some(1));
}

#[tokio::test(start_paused = true)]
async fn standby_shutdown_leaves_the_leaders_lease_alone() {
    let api = MemLease::default();
    let mut a = spawn(&api, ME);
    until(&mut a.leading, true).await;
    let mut b = spawn(&api, OTHER);
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.stop.take().unwrap().send(()).unwrap();
    b.task.await.unwrap().unwrap();
    assert_eq!(api.spec().unwrap().holder(), Some(ME));
    assert!(*a.leading.borrow());
}

#[tokio::test(start_paused = true)]
async fn invalid_settings_are_refused_before_touching_the_api() {
    let api = MemLease::default();
    let cfg = LeaseConfig {
        renew_deadline: Duration::from_secs(20),
        ..LeaseConfig::default()
    };
    let elector = LeaderElector::with_api(api.clone(), ME, cfg);
    let err = elector.run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, LeaderError::InvalidConfig { .. }), "{err}");
    assert!(api.spec().is_none());
}

#[tokio::test(start_paused = true)]
async fn leadership_changes_reach_the_metrics_handed_in() {
    let api = MemLease::default();
    let metrics = Recording::default();
    let elector = LeaderElector::with_api(api.clone(), ME, LeaseConfig::default())
        .with_metrics(metrics.handle());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (mut leading, task) = elector.spawn(async move {
        let _ = rx.await;
    });
    until(&mut leading, true).await;
    assert_eq!(metrics.lines(), vec!["leader true"]);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(metrics.lines(), vec!["leader true", "leader false"]);
}
