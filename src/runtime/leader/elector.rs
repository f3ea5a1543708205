//! The election loop and its I/O: campaign until the Lease is ours, renew it every
//! retry period, step down at the renew deadline, release on shutdown.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use super::decide::{decide, observe, released, Decision, ObservedLease};
use super::{LeaderError, LeaseConfig, JITTER_FACTOR};
use crate::backoff::SplitMix64;
use crate::k8s::kind::LEASES;
use crate::k8s::lease::{Lease, LeaseSpec};
use crate::k8s::types::ObjectMeta;
use crate::k8s::Client;
use crate::runtime::metrics::MetricsHandle;

/// Reads and writes the one Lease of the election. The seam exists so the timing of
/// [`LeaderElector::run`] can be tested on paused time without a network.
pub(crate) trait LeaseApi: Send + Sync {
    /// The lease, or `None` when it does not exist.
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, crate::k8s::Error>> + Send;
    /// Creates the lease with `spec`.
    fn create(
        &self,
        spec: &LeaseSpec,
    ) -> impl Future<Output = Result<Lease, crate::k8s::Error>> + Send;
    /// Whole-object PUT; `lease.metadata.resourceVersion` makes it conditional.
    fn replace(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<Lease, crate::k8s::Error>> + Send;
}

/// The Lease `namespace/name` on the API server.
#[derive(Clone)]
pub(crate) struct KubeLease {
    client: Client,
    namespace: String,
    name: String,
}

// === impl KubeLease ===

impl KubeLease {
    pub(crate) fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl LeaseApi for KubeLease {
    async fn get(&self) -> Result<Option<Lease>, crate::k8s::Error> {
        match self
            .client
            .get::<Lease>(&LEASES.object(Some(&self.namespace), &self.name))
            .await
        {
            Ok(lease) => Ok(Some(lease)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Lease, crate::k8s::Error> {
        let lease = Lease {
            api_version: Some(LEASES.api_version()),
            kind: Some("Lease".to_string()),
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: spec.clone(),
        };
        self.client
            .create(&LEASES.collection(Some(&self.namespace)), &lease)
            .await
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, crate::k8s::Error> {
        let mut lease = lease.clone();
        lease.api_version = Some(LEASES.api_version());
        lease.kind = Some("Lease".to_string());
        self.client
            .replace(&LEASES.object(Some(&self.namespace), &self.name), &lease)
            .await
    }
}

/// Runs the election and publishes whether this replica leads.
///
/// Usage: build it, [`subscribe`](Self::subscribe) as often as needed, spawn
/// [`run`](Self::run). Work that must stop before another replica starts should watch
/// the receiver: it turns `false` the moment leadership is lost or shutdown begins.
pub(crate) struct LeaderElector<A = KubeLease> {
    api: A,
    identity: String,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    observed: Option<ObservedLease>,
    /// Spreads the retries of candidates, so standbys do not hit the API in lockstep.
    rng: SplitMix64,
    metrics: MetricsHandle,
}

// === impl LeaderElector ===

impl LeaderElector<KubeLease> {
    /// Elects on the Lease `namespace/name` as `identity` (see [`identity`](super::identity)).
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        cfg: LeaseConfig,
    ) -> Self {
        Self::with_api(KubeLease::new(client, namespace, name), identity, cfg)
    }
}

impl<A: LeaseApi> LeaderElector<A> {
    pub(crate) fn with_api(api: A, identity: &str, cfg: LeaseConfig) -> Self {
        Self {
            api,
            identity: identity.to_string(),
            cfg,
            tx: watch::channel(false).0,
            observed: None,
            rng: SplitMix64::from_entropy(),
            metrics: MetricsHandle::default(),
        }
    }

    /// Reports every change of leadership to `metrics`.
    #[must_use]
    pub(crate) fn with_metrics(self, metrics: MetricsHandle) -> Self {
        Self { metrics, ..self }
    }

    /// `true` while this replica leads.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Spawns [`run`](Self::run) and hands back the leadership receiver and the task.
    pub(crate) fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (
        watch::Receiver<bool>,
        tokio::task::JoinHandle<Result<(), LeaderError>>,
    )
    where
        A: 'static,
    {
        let leading = self.subscribe();
        (leading, tokio::spawn(self.run(shutdown)))
    }

    /// Campaigns, leads and renews until `shutdown` completes; then stops leading and
    /// releases the lease if held. Returns an error only for invalid settings or a
    /// failed release; API failures along the way are logged and retried.
    pub(crate) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), LeaderError> {
        self.cfg.validate()?;
        tokio::pin!(shutdown);
        loop {
            // --- candidate: try every jittered retry period until we hold the lease ---
            let mut last_renew = loop {
                let started = Instant::now();
                match or_shutdown(&mut shutdown, self.attempt(self.cfg.renew_deadline)).await {
                    // An attempt cut short may have written: release if it did.
                    Step::Shutdown => return self.release().await,
                    Step::Done(Ok(Attempt::Holding)) => break started,
                    Step::Done(Ok(Attempt::Held { holder })) => {
                        tracing::debug!(%holder, "leader election: lease held by another replica");
                    }
                    Step::Done(Err(e)) => {
                        tracing::warn!(error = %e, "leader election: acquiring failed, will retry");
                    }
                }
                let pause = tokio::time::sleep(self.jittered_retry());
                if let Step::Shutdown = or_shutdown(&mut shutdown, pause).await {
                    return Ok(());
                }
            };

            // --- leader: renew every retry period; give up at the renew deadline ---
            self.set_leader(true);
            'leading: loop {
                let pause = tokio::time::sleep(self.cfg.retry_period);
                if let Step::Shutdown = or_shutdown(&mut shutdown, pause).await {
                    self.set_leader(false);
                    return self.release().await;
                }
                loop {
                    let deadline = last_renew + self.cfg.renew_deadline;
                    let started = Instant::now();
                    let left = deadline.saturating_duration_since(started);
                    if left.is_zero() {
                        tracing::warn!("leader election: renew deadline passed, stepping down");
                        break 'leading;
                    }
                    match or_shutdown(&mut shutdown, self.attempt(left)).await {
                        Step::Shutdown => {
                            self.set_leader(false);
                            return self.release().await;
                        }
                        Step::Done(Ok(Attempt::Holding)) => {
                            last_renew = started;
                            break;
                        }
                        Step::Done(Ok(Attempt::Held { holder })) => {
                            tracing::warn!(%holder, "leader election: lease taken over, stepping down");
                            break 'leading;
                        }
                        Step::Done(Err(e)) => {
                            tracing::warn!(error = %e, "leader election: renewing failed, retrying");
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let pause = tokio::time::sleep(self.cfg.retry_period.min(left));
                    if let Step::Shutdown = or_shutdown(&mut shutdown, pause).await {
                        self.set_leader(false);
                        return self.release().await;
                    }
                }
            }
            self.set_leader(false);
            // Back off before campaigning again, as a fresh candidate would.
            let pause = tokio::time::sleep(self.jittered_retry());
            if let Step::Shutdown = or_shutdown(&mut shutdown, pause).await {
                return self.release().await;
            }
        }
    }

    /// The retry period stretched by up to [`JITTER_FACTOR`] times itself (client-go's
    /// `wait.Jitter`): candidates retry within `retry * [1, 2.2)`.
    fn jittered_retry(&mut self) -> Duration {
        self.rng.stretch(self.cfg.retry_period, JITTER_FACTOR)
    }

    /// One read-decide-write round, bounded by `limit`.
    async fn attempt(&mut self, limit: Duration) -> Result<Attempt, LeaderError> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(r) => r,
            Err(_) => Err(LeaderError::Timeout {
                phase: "acquiring or renewing",
                after: limit,
            }),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaderError> {
        let current = self
            .api
            .get()
            .await
            .map_err(|source| LeaderError::Get { source })?;
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let observed_at = match &current {
            Some(lease) => {
                let obs = observe(self.observed.take(), &lease.spec, now);
                let at = obs.at;
                self.observed = Some(obs);
                at
            }
            None => now,
        };
        let decision = decide(
            current.as_ref().map(|l| &l.spec),
            observed_at,
            now,
            wall,
            &self.identity,
            &self.cfg,
        );
        let written = match (decision, current) {
            (Decision::Wait { holder, .. }, _) => return Ok(Attempt::Held { holder }),
            (Decision::Create(spec), _) => self
                .api
                .create(&spec)
                .await
                .map_err(|source| LeaderError::Create { source })?,
            (Decision::Renew(spec) | Decision::Acquire(spec), Some(mut lease)) => {
                let takeover = lease.spec.holder() != Some(self.identity.as_str());
                lease.spec = spec;
                let written = self
                    .api
                    .replace(&lease)
                    .await
                    .map_err(|source| LeaderError::Update { source })?;
                if takeover {
                    tracing::info!(
                        identity = %self.identity,
                        transitions = written.spec.lease_transitions.unwrap_or(0),
                        "leader election: acquired the lease"
                    );
                }
                written
            }
            // decide() only renews or acquires a lease that exists.
            (Decision::Renew(_) | Decision::Acquire(_), None) => {
                return Err(LeaderError::InvalidConfig {
                    reason: "internal: renew decided without a lease".into(),
                })
            }
        };
        self.observed = Some(observe(self.observed.take(), &written.spec, now));
        Ok(Attempt::Holding)
    }

    /// Empties the holder if the lease still names us. Bounded by the renew deadline.
    async fn release(&mut self) -> Result<(), LeaderError> {
        let limit = self.cfg.renew_deadline;
        let result = tokio::time::timeout(limit, async {
            let Some(mut lease) = self
                .api
                .get()
                .await
                .map_err(|source| LeaderError::Release { source })?
            else {
                return Ok(());
            };
            if lease.spec.holder() != Some(self.identity.as_str()) {
                return Ok(());
            }
            lease.spec = released(&lease.spec, OffsetDateTime::now_utc());
            self.api
                .replace(&lease)
                .await
                .map_err(|source| LeaderError::Release { source })?;
            tracing::info!(identity = %self.identity, "leader election: released the lease");
            Ok(())
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => Err(LeaderError::Timeout {
                phase: "releasing",
                after: limit,
            }),
        }
    }

    fn set_leader(&self, leading: bool) {
        let was = self.tx.send_replace(leading);
        self.metrics.leader(leading);
        if was != leading {
            if leading {
                tracing::info!(identity = %self.identity, "leader election: now leading");
            } else {
                tracing::info!(identity = %self.identity, "leader election: stopped leading");
            }
        }
    }
}

// === racing shutdown ===

/// What one attempt found.
enum Attempt {
    /// We hold the lease now.
    Holding,
    /// Someone else holds it.
    Held { holder: String },
}

/// A future raced against shutdown.
enum Step<T> {
    Shutdown,
    Done(T),
}

async fn or_shutdown<T>(
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    work: impl Future<Output = T>,
) -> Step<T> {
    tokio::select! {
        _ = shutdown.as_mut() => Step::Shutdown,
        v = work => Step::Done(v),
    }
}

#[cfg(test)]
mod tests;
