//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.
//!
//! Several replicas run; one holds the Lease and does the writes, the others wait to
//! take over. The rules, and why:
//! - A lease counts as expired `leaseDurationSeconds` after **this process last saw the
//!   record change**, never by comparing the holder's `renewTime` with our clock: the
//!   replicas' clocks may disagree, our monotonic clock cannot.
//! - Every write is a whole-object PUT carrying the `resourceVersion` we read: a 409
//!   means someone else wrote first, so our write did not happen.
//! - The leader re-reads and renews every `retry_period`. If it cannot renew within
//!   `renew_deadline` (less than `lease_duration`) of its last successful renewal, it
//!   stops leading at once: by then the others may be about to take over.
//! - A takeover increments `leaseTransitions`; a renewal keeps `acquireTime`.
//! - On shutdown the leader first announces `false`, then releases by emptying
//!   `holderIdentity`, so a standby takes over without waiting out the lease.
//!
//! The decision is a pure function ([`decide`]) of the observed record, the time and
//! our identity; [`LeaderElector::run`] only does I/O and timing around it.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::k8s::kind::LEASES;
use crate::k8s::types::ObjectMeta;
use crate::k8s::Client;

/// Name of the operator's Lease. rbac.yaml grants get/update on exactly this name.
pub const DEFAULT_LEASE_NAME: &str = "ecr-creds-refresher";

/// client-go's jitter on acquisition retries: waits are `retry * [1, 2.2)`, which keeps
/// standbys from hitting the API server in lockstep.
pub const JITTER_FACTOR: f64 = 1.2;

// === LeaseConfig ===

/// Timing of the election. The defaults are client-go's (and controller-runtime's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a standby waits, after it last saw the lease change, before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts (with jitter while not leading).
    pub retry_period: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseConfig {
    /// client-go's checks: the leader must give up (renew deadline) before a standby may
    /// take over (lease duration), and must get more than one jittered try before that.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.retry_period.is_zero() {
            return invalid("the retry period must be positive".into());
        }
        if self.lease_duration.as_secs() == 0 || self.lease_duration.subsec_nanos() != 0 {
            return invalid(format!(
                "the lease duration must be a whole number of seconds (leaseDurationSeconds), got {:?}",
                self.lease_duration
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return invalid(format!(
                "the renew deadline ({:?}) must be longer than {JITTER_FACTOR} x the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

// === wire types ===

/// A `coordination.k8s.io/v1` Lease, as much of it as a whole-object PUT must carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LeaseSpec,
}

/// `spec` of a Lease. Fields we do not model (e.g. `strategy`, `preferredHolder` of
/// coordinated leader election) are kept in `extra` so our PUTs do not erase them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    /// MicroTime: RFC 3339 with exactly six fractional digits. Kept as the server's
    /// string: expiry never reads it (see the module doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LeaseSpec {
    /// The holder, `None` when the lease is free (absent or empty `holderIdentity`).
    pub fn holder(&self) -> Option<&str> {
        self.holder_identity.as_deref().filter(|h| !h.is_empty())
    }
}

/// A `metav1.MicroTime`: UTC, exactly six fractional digits, e.g.
/// `2026-11-26T21:00:00.123456Z`.
pub fn micro_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

// === the pure decision ===

/// The last lease record this process saw, and when it first saw it in this form.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub spec: LeaseSpec,
    pub at: Instant,
}

/// Updates what we observed: the clock restarts only when the record changed.
pub fn observe(prev: Option<Observed>, current: &LeaseSpec, now: Instant) -> Observed {
    match prev {
        Some(prev) if prev.spec == *current => prev,
        _ => Observed {
            spec: current.clone(),
            at: now,
        },
    }
}

/// What to do after reading the lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No lease exists: create it, holding it.
    Create(LeaseSpec),
    /// We hold it: PUT this renewed spec.
    Renew(LeaseSpec),
    /// It is free or expired: PUT this spec, taking over.
    Acquire(LeaseSpec),
    /// Someone else holds it and it has not expired (as we measure it).
    Wait { holder: String, expires_at: Instant },
}

/// Decides from the lease as read (`None`: it does not exist), when this process last
/// saw its record change (`observed_at`), the time now (monotonic for expiry, wall for
/// the MicroTime fields) and our identity.
pub fn decide(
    current: Option<&LeaseSpec>,
    observed_at: Instant,
    now: Instant,
    wall: OffsetDateTime,
    me: &str,
    cfg: &LeaseConfig,
) -> Decision {
    let stamp = micro_time(wall);
    let Some(current) = current else {
        return Decision::Create(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(cfg.lease_duration_seconds()),
            acquire_time: Some(stamp.clone()),
            renew_time: Some(stamp),
            lease_transitions: Some(0),
            extra: Default::default(),
        });
    };
    match current.holder() {
        Some(holder) if holder == me => Decision::Renew(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(cfg.lease_duration_seconds()),
            acquire_time: Some(
                current
                    .acquire_time
                    .clone()
                    .unwrap_or_else(|| stamp.clone()),
            ),
            renew_time: Some(stamp),
            lease_transitions: current.lease_transitions,
            extra: current.extra.clone(),
        }),
        Some(holder) => {
            // The holder's own duration rules, as in client-go; ours if it wrote none.
            let secs = current
                .lease_duration_seconds
                .filter(|s| *s > 0)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(cfg.lease_duration);
            let expires_at = observed_at + secs;
            if now < expires_at {
                Decision::Wait {
                    holder: holder.to_string(),
                    expires_at,
                }
            } else {
                Decision::Acquire(take_over(current, me, stamp, cfg))
            }
        }
        None => Decision::Acquire(take_over(current, me, stamp, cfg)),
    }
}

fn take_over(current: &LeaseSpec, me: &str, stamp: String, cfg: &LeaseConfig) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(cfg.lease_duration_seconds()),
        acquire_time: Some(stamp.clone()),
        renew_time: Some(stamp),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0).saturating_add(1)),
        extra: current.extra.clone(),
    }
}

/// The spec that releases a lease we hold: no holder, a one-second duration (so
/// candidates with older clients also move at once), transitions kept.
pub fn released(current: &LeaseSpec, wall: OffsetDateTime) -> LeaseSpec {
    let stamp = micro_time(wall);
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(stamp.clone()),
        renew_time: Some(stamp),
        lease_transitions: current.lease_transitions,
        extra: current.extra.clone(),
    }
}

/// A unique identity for this replica: the pod name (hostname) plus a random suffix, so
/// a restarted pod with the same name never mistakes the old lease for its own.
pub fn identity(hostname: &str) -> String {
    format!(
        "{hostname}_{:016x}",
        RandomState::new().hash_one(std::process::id())
    )
}

// === Error ===

/// What went wrong in one election step. Only [`Error::InvalidConfig`] and a failed
/// release are returned from [`LeaderElector::run`]; the others are logged and retried.
#[derive(Debug)]
pub enum Error {
    InvalidConfig {
        reason: String,
    },
    /// Reading the Lease failed.
    Get {
        source: crate::k8s::Error,
    },
    /// Creating the Lease failed (409 AlreadyExists: another replica created it first).
    Create {
        source: crate::k8s::Error,
    },
    /// Renewing or taking over failed (409: someone else wrote first).
    Update {
        source: crate::k8s::Error,
    },
    /// Emptying the holder on shutdown failed; standbys wait out the lease instead.
    Release {
        source: crate::k8s::Error,
    },
    /// The API server did not answer in time.
    Timeout {
        phase: &'static str,
        after: Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { reason } => {
                write!(f, "invalid leader election settings: {reason}")
            }
            Error::Get { source } => write!(f, "reading the leader Lease failed: {source}"),
            Error::Create { source } => write!(f, "creating the leader Lease failed: {source}"),
            Error::Update { source } => {
                write!(f, "renewing or acquiring the leader Lease failed: {source}")
            }
            Error::Release { source } => write!(
                f,
                "releasing the leader Lease failed (a standby takes over when it expires): {source}"
            ),
            Error::Timeout { phase, after } => {
                write!(
                    f,
                    "{phase} of the leader Lease got no answer within {after:?}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Get { source }
            | Error::Create { source }
            | Error::Update { source }
            | Error::Release { source } => Some(source),
            Error::InvalidConfig { .. } | Error::Timeout { .. } => None,
        }
    }
}

// === LeaseApi ===

/// Reads and writes the one Lease of the election. The seam exists so the timing of
/// [`LeaderElector::run`] can be tested on paused time without a network.
pub trait LeaseApi: Send + Sync {
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
pub struct KubeLease {
    client: Client,
    namespace: String,
    name: String,
}

impl KubeLease {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
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

// === LeaderElector ===

/// Runs the election and publishes whether this replica leads.
///
/// Usage: build it, [`subscribe`](Self::subscribe) as often as needed, spawn
/// [`run`](Self::run). Work that must stop before another replica starts should watch
/// the receiver: it turns `false` the moment leadership is lost or shutdown begins.
pub struct LeaderElector<A = KubeLease> {
    api: A,
    identity: String,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    observed: Option<Observed>,
}

impl LeaderElector<KubeLease> {
    /// Elects on the Lease `namespace/name` as `identity` (see [`identity`]).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        cfg: LeaseConfig,
    ) -> Self {
        Self::with_api(KubeLease::new(client, namespace, name), identity, cfg)
    }
}

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

/// `period` stretched by up to [`JITTER_FACTOR`] times itself.
fn jittered(period: Duration) -> Duration {
    let unit = RandomState::new().hash_one(Instant::now()) as f64 / u64::MAX as f64;
    period + period.mul_f64(JITTER_FACTOR * unit)
}

impl<A: LeaseApi> LeaderElector<A> {
    pub fn with_api(api: A, identity: &str, cfg: LeaseConfig) -> Self {
        Self {
            api,
            identity: identity.to_string(),
            cfg,
            tx: watch::channel(false).0,
            observed: None,
        }
    }

    /// `true` while this replica leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Spawns [`run`](Self::run) and hands back the leadership receiver and the task.
    pub fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (
        watch::Receiver<bool>,
        tokio::task::JoinHandle<Result<(), Error>>,
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
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
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
                let pause = tokio::time::sleep(jittered(self.cfg.retry_period));
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
            let pause = tokio::time::sleep(jittered(self.cfg.retry_period));
            if let Step::Shutdown = or_shutdown(&mut shutdown, pause).await {
                return self.release().await;
            }
        }
    }

    /// One read-decide-write round, bounded by `limit`.
    async fn attempt(&mut self, limit: Duration) -> Result<Attempt, Error> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                phase: "acquiring or renewing",
                after: limit,
            }),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Error> {
        let current = self
            .api
            .get()
            .await
            .map_err(|source| Error::Get { source })?;
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
                .map_err(|source| Error::Create { source })?,
            (Decision::Renew(spec) | Decision::Acquire(spec), Some(mut lease)) => {
                let takeover = lease.spec.holder() != Some(self.identity.as_str());
                lease.spec = spec;
                let written = self
                    .api
                    .replace(&lease)
                    .await
                    .map_err(|source| Error::Update { source })?;
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
                return Err(Error::InvalidConfig {
                    reason: "internal: renew decided without a lease".into(),
                })
            }
        };
        self.observed = Some(observe(self.observed.take(), &written.spec, now));
        Ok(Attempt::Holding)
    }

    /// Empties the holder if the lease still names us. Bounded by the renew deadline.
    async fn release(&mut self) -> Result<(), Error> {
        let limit = self.cfg.renew_deadline;
        let result = tokio::time::timeout(limit, async {
            let Some(mut lease) = self
                .api
                .get()
                .await
                .map_err(|source| Error::Release { source })?
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
                .map_err(|source| Error::Release { source })?;
            tracing::info!(identity = %self.identity, "leader election: released the lease");
            Ok(())
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                phase: "releasing",
                after: limit,
            }),
        }
    }

    fn set_leader(&self, leading: bool) {
        let was = self.tx.send_replace(leading);
        crate::metrics::set_leader(leading);
        if was != leading {
            if leading {
                tracing::info!(identity = %self.identity, "leader election: now leading");
            } else {
                tracing::info!(identity = %self.identity, "leader election: stopped leading");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use crate::k8s::types::Status;

    const ME: &str = "pod-a_1";
    const OTHER: &str = "pod-b_2";

    fn wall() -> OffsetDateTime {
        time::macros::datetime!(2026-11-26 21:00:00.123456789 UTC)
    }

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(15),
            acquire_time: Some("2026-11-26T20:00:00.000001Z".into()),
            renew_time: Some("2026-11-26T20:59:59.000001Z".into()),
            lease_transitions: Some(transitions),
            extra: Default::default(),
        }
    }

    // --- the pure decision ---

    #[test]
    fn micro_time_has_exactly_six_fractional_digits_in_utc() {
        assert_eq!(micro_time(wall()), "2026-11-26T21:00:00.123456Z");
        let offset = time::macros::datetime!(2026-11-26 23:00:00.5 +02:00);
        assert_eq!(micro_time(offset), "2026-11-26T21:00:00.500000Z");
    }

    #[test]
    fn absent_lease_is_created_holding_it_with_zero_transitions() {
        let t0 = Instant::now();
        let d = decide(None, t0, t0, wall(), ME, &LeaseConfig::default());
        let Decision::Create(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.holder(), Some(ME));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(
            spec.acquire_time.as_deref(),
            Some("2026-11-26T21:00:00.123456Z")
        );
        assert_eq!(spec.renew_time, spec.acquire_time);
    }

    #[test]
    fn lease_held_by_another_waits_until_duration_after_we_saw_it_change() {
        let cfg = LeaseConfig::default();
        let seen = Instant::now();
        let current = held_by(OTHER, 3);
        // The holder's renewTime is an hour old by its clock: irrelevant.
        let d = decide(
            Some(&current),
            seen,
            seen + Duration::from_secs(14),
            wall(),
            ME,
            &cfg,
        );
        assert_eq!(
            d,
            Decision::Wait {
                holder: OTHER.into(),
                expires_at: seen + Duration::from_secs(15)
            }
        );
        let d = decide(
            Some(&current),
            seen,
            seen + Duration::from_secs(15),
            wall(),
            ME,
            &cfg,
        );
        let Decision::Acquire(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.holder(), Some(ME));
        assert_eq!(
            spec.lease_transitions,
            Some(4),
            "takeover increments leaseTransitions"
        );
        assert_eq!(
            spec.acquire_time.as_deref(),
            Some("2026-11-26T21:00:00.123456Z")
        );
    }

    #[test]
    fn expiry_uses_the_holders_lease_duration_when_it_wrote_one() {
        let cfg = LeaseConfig::default();
        let seen = Instant::now();
        let mut current = held_by(OTHER, 0);
        current.lease_duration_seconds = Some(60);
        let d = decide(
            Some(&current),
            seen,
            seen + Duration::from_secs(30),
            wall(),
            ME,
            &cfg,
        );
        assert!(matches!(d, Decision::Wait { .. }), "{d:?}");
        current.lease_duration_seconds = None;
        let d = decide(
            Some(&current),
            seen,
            seen + Duration::from_secs(15),
            wall(),
            ME,
            &cfg,
        );
        assert!(matches!(d, Decision::Acquire(_)), "{d:?}");
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions_and_moves_renew_time() {
        let seen = Instant::now();
        let mut current = held_by(ME, 7);
        current.extra.insert(
            "strategy".into(),
            serde_json::json!("OldestEmulationVersion"),
        );
        let d = decide(
            Some(&current),
            seen,
            seen,
            wall(),
            ME,
            &LeaseConfig::default(),
        );
        let Decision::Renew(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.acquire_time, current.acquire_time);
        assert_eq!(spec.lease_transitions, Some(7));
        assert_eq!(
            spec.renew_time.as_deref(),
            Some("2026-11-26T21:00:00.123456Z")
        );
        assert_eq!(
            spec.extra, current.extra,
            "unknown spec fields survive the PUT"
        );
    }

    #[test]
    fn released_lease_is_acquired_at_once_as_a_transition() {
        let seen = Instant::now();
        let free = released(&held_by(OTHER, 2), wall());
        assert_eq!(free.holder(), None);
        assert_eq!(free.lease_transitions, Some(2));
        let d = decide(Some(&free), seen, seen, wall(), ME, &LeaseConfig::default());
        let Decision::Acquire(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.lease_transitions, Some(3));
        // An empty string is a free lease too.
        let mut empty = held_by("", 2);
        empty.holder_identity = Some(String::new());
        let d = decide(
            Some(&empty),
            seen,
            seen,
            wall(),
            ME,
            &LeaseConfig::default(),
        );
        assert!(matches!(d, Decision::Acquire(_)), "{d:?}");
    }

    #[test]
    fn observation_clock_restarts_only_when_the_record_changes() {
        let t0 = Instant::now();
        let a = observe(None, &held_by(OTHER, 0), t0);
        assert_eq!(a.at, t0);
        let b = observe(Some(a), &held_by(OTHER, 0), t0 + Duration::from_secs(5));
        assert_eq!(
            b.at, t0,
            "same record: still counting from the first sighting"
        );
        let mut renewed = held_by(OTHER, 0);
        renewed.renew_time = Some("2026-11-26T21:00:01.000000Z".into());
        let c = observe(Some(b), &renewed, t0 + Duration::from_secs(6));
        assert_eq!(c.at, t0 + Duration::from_secs(6));
    }

    #[test]
    fn config_must_let_the_leader_step_down_before_a_takeover() {
        assert!(LeaseConfig::default().validate().is_ok());
        let bad = LeaseConfig {
            renew_deadline: Duration::from_secs(15),
            ..LeaseConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = LeaseConfig {
            retry_period: Duration::from_secs(9),
            ..LeaseConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = LeaseConfig {
            lease_duration: Duration::from_millis(15_500),
            ..LeaseConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn identity_is_unique_per_process_start_and_names_the_pod() {
        let a = identity("pod-a");
        let b = identity("pod-a");
        assert!(a.starts_with("pod-a_"));
        assert_ne!(a, b);
    }

    #[test]
    fn lease_round_trips_unknown_spec_fields_and_omits_empty_holder() {
        let json = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "42"},
            "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15,
                     "leaseTransitions": 1, "preferredHolder": "y"}
        });
        let lease: Lease = serde_json::from_value(json).unwrap();
        assert_eq!(
            lease.spec.extra.get("preferredHolder"),
            Some(&serde_json::json!("y"))
        );
        let back = serde_json::to_value(&lease).unwrap();
        assert_eq!(back["spec"]["preferredHolder"], "y");
        assert_eq!(back["metadata"]["resourceVersion"], "42");
        let free = serde_json::to_value(released(&lease.spec, wall())).unwrap();
        assert!(free.get("holderIdentity").is_none());
    }

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
            status: Status {
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
        task: tokio::task::JoinHandle<Result<(), Error>>,
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
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
        assert!(api.spec().is_none());
    }
}
