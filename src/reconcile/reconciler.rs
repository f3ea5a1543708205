//! One reconcile of one CR: validate, plan from the caches, fetch tokens only when a
//! write needs one, apply with bounded concurrency, report status and events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::dockerconfig::{self, AuthEntry};
use super::events::EventRecorder;
use super::executor::{secret_annotations, Executor, SecretContent, SecretOutcome};
use super::plan::{self, Observed, Plan, SecretStep};
use super::registry::RegistryHost;
use super::select::NamespaceView;
use super::spec::{DeletionPolicy, EcrPullSecret, NamespaceFailure, ValidSpec, FINALIZER};
use super::state::{format_time, ManagedSecret, SaView};
use super::status::{self, reason, Outcome};
use super::tokens::{refresh_at, FetchToken, RegistryToken, TokenCache, TokenGroup};
use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, Patch};
pub use crate::runtime::controller::Action;

/// Read access to the watch caches, so the reconciler sees no wire.
pub trait ObservedState: Send + Sync + 'static {
    fn cr(&self, name: &str) -> Option<EcrPullSecret>;
    fn namespaces(&self) -> Vec<NamespaceView>;
    fn managed_secrets(&self) -> Vec<ManagedSecret>;
    fn service_accounts(&self) -> Vec<SaView>;
    /// The managed Secrets one CR's plan can concern: those named `secret_name` (ours,
    /// or another CR's in the way) and those `owner` owns elsewhere. With ten CRs over a
    /// thousand namespaces, copying every managed Secret on each reconcile dominated the
    /// operator's memory and CPU.
    fn managed_secrets_for(&self, owner: &str, secret_name: &str) -> Vec<ManagedSecret> {
        self.managed_secrets()
            .into_iter()
            .filter(|s| s.owner == owner || s.name == secret_name)
            .collect()
    }
}

/// Operator-wide settings from the reference operator's environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `AWS_REGION`: the region when a CR names none.
    pub default_region: Option<String>,
    /// `REGISTRY`: registry hosts when a CR names none.
    pub default_registries: Vec<String>,
    /// Writes in flight at once for one reconcile.
    pub write_concurrency: usize,
    /// How soon a conflict (a foreign Secret our label-filtered watch cannot see) is
    /// looked at again.
    pub conflict_recheck: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_region: None,
            default_registries: Vec::new(),
            write_concurrency: 16,
            conflict_recheck: Duration::from_secs(60),
        }
    }
}

/// A reconcile that must be retried with backoff. The status already says why.
#[derive(Debug)]
pub struct ReconcileError {
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for ReconcileError {}

/// Reconciles `ECRPullSecret`s.
pub struct Reconciler<F, S> {
    client: Client,
    state: S,
    tokens: Arc<TokenCache<F>>,
    executor: Executor,
    events: EventRecorder,
    settings: Settings,
    /// The last status written per CR, so a reconcile that runs before the CR watch has
    /// delivered that write (our own Secret writes trigger one at once) compares against
    /// it instead of the stale cached status: no second write, no duplicate event.
    written: std::sync::Mutex<std::collections::HashMap<String, WrittenStatus>>,
}

/// A status we wrote: the CR's uid, the status it replaced and the one written.
struct WrittenStatus {
    uid: Option<String>,
    before: Option<super::spec::Status>,
    after: super::spec::Status,
}

/// What a write would put in place: the payload, and the times it was computed from.
struct Planned {
    content: SecretContent,
    refresh_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

/// The per-namespace result of applying a plan.
struct Applied {
    synced: BTreeSet<String>,
    failures: Vec<NamespaceFailure>,
    /// Earliest refresh point of the Secrets now in place.
    refresh_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    wrote_token: bool,
    transient: bool,
}

// === impl Reconciler ===

impl<F: FetchToken, S: ObservedState> Reconciler<F, S> {
    pub fn new(
        client: Client,
        state: S,
        tokens: Arc<TokenCache<F>>,
        events: EventRecorder,
        settings: Settings,
    ) -> Self {
        Reconciler {
            executor: Executor::new(client.clone()),
            client,
            state,
            tokens,
            events,
            settings,
            written: Default::default(),
        }
    }

    pub fn tokens(&self) -> &Arc<TokenCache<F>> {
        &self.tokens
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    pub async fn reconcile(&self, name: &str) -> Result<Action, ReconcileError> {
        let Some(cr) = self.state.cr(name) else {
            self.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            // No Secret is named "": this copies only the ones the CR owned.
            let kept = self.state.managed_secrets_for(name, "").len();
            if kept > 0 {
                tracing::info!(cr = name, secrets = kept,
                    "ECRPullSecret deleted with deletionPolicy Retain: keeping its Secrets and ServiceAccount entries");
            }
            return Ok(Action::AwaitChange);
        };
        let now = OffsetDateTime::now_utc();
        let deleting = cr.metadata.deletion_timestamp.is_some();
        let has_finalizer = cr.metadata.finalizers.iter().any(|f| f == FINALIZER);

        let spec = match cr.spec.validate(&self.settings.default_registries) {
            Ok(spec) => spec,
            Err(e) => {
                if deleting && has_finalizer {
                    // Cleanup needs no valid spec: it removes what the CR owns.
                    return self.finish_deletion(&cr, None, now).await;
                }
                let outcome = Outcome {
                    fatal: Some((reason::INVALID_SPEC, e.to_string())),
                    ..Default::default()
                };
                self.write_status(&cr, &outcome, now).await;
                return Ok(Action::AwaitChange);
            }
        };

        if deleting {
            if has_finalizer {
                return self.finish_deletion(&cr, Some(&spec), now).await;
            }
            return Ok(Action::AwaitChange);
        }
        self.sync_finalizer(&cr, spec.deletion_policy == DeletionPolicy::Delete)
            .await?;

        let namespaces = self.state.namespaces();
        let secrets = self.state.managed_secrets_for(name, &spec.secret_name);
        let sas = self.state.service_accounts();
        let observed = Observed {
            namespaces: &namespaces,
            secrets: &secrets,
            service_accounts: &sas,
        };
        let plan = plan::plan(name, &spec, &observed, now, false);

        let mut outcome = Outcome {
            targets: plan.targets.len() as u32,
            ..Default::default()
        };
        let tokens = if plan.needs_token() {
            match self.fetch_tokens(&spec, now).await {
                Ok(t) => Some(t),
                Err((why, message)) => {
                    // Existing Secrets stay as they are; what needs no token (fresh
                    // namespaces' ServiceAccounts, Secrets no longer wanted) still goes on.
                    let applied = self.apply(name, &spec, &plan, None, &secrets).await;
                    outcome.fatal = Some((why, message.clone()));
                    outcome.synced = applied.synced.len() as u32;
                    outcome.expires_at = applied.expires_at.map(format_time);
                    self.write_status(&cr, &outcome, now).await;
                    return Err(ReconcileError {
                        reason: why,
                        message,
                    });
                }
            }
        } else {
            None
        };

        let applied = self
            .apply(name, &spec, &plan, tokens.as_ref(), &secrets)
            .await;
        outcome.synced = applied.synced.len() as u32;
        outcome.failures = applied.failures;
        for ns in &plan.missing {
            outcome.failures.push(NamespaceFailure {
                namespace: ns.clone(),
                reason: reason::NAMESPACE_NOT_FOUND.into(),
                message: format!("namespace {ns} does not exist"),
            });
        }
        outcome.targets += plan.missing.len() as u32;
        outcome.expires_at = applied.expires_at.map(format_time);
        if applied.wrote_token {
            outcome.last_refresh_time = Some(format_time(now));
        }
        let has_conflicts = outcome
            .failures
            .iter()
            .any(|f| f.reason == reason::SECRET_CONFLICT);
        let next = applied.refresh_at.map(|at| {
            let floor = now + time::Duration::try_from(spec.min_interval).unwrap_or_default();
            at.max(floor)
        });
        outcome.next_refresh_time = next.map(format_time);
        self.write_status(&cr, &outcome, now).await;

        if applied.transient {
            return Err(ReconcileError {
                reason: reason::NAMESPACE_ERRORS,
                message: format!("{} namespaces failed", outcome.failures.len()),
            });
        }
        let wait = match (next, has_conflicts) {
            // Nothing to refresh and nothing to recheck: a watch event brings it back.
            (None, false) => return Ok(Action::AwaitChange),
            (None, true) => self.settings.conflict_recheck,
            (Some(at), false) => to_std(at - now),
            (Some(at), true) => to_std(at - now).min(self.settings.conflict_recheck),
        };
        Ok(Action::Requeue(jitter(wait, name)))
    }

    /// One token per (region, public) group the CR needs, from the shared cache.
    async fn fetch_tokens(
        &self,
        spec: &ValidSpec,
        now: OffsetDateTime,
    ) -> Result<BTreeMap<TokenGroup, Arc<RegistryToken>>, (&'static str, String)> {
        let mut out = BTreeMap::new();
        for group in self.groups(spec)? {
            let token = self
                .tokens
                .token(&group, spec.before_expiry, spec.min_interval, now)
                .await
                .map_err(|e| (e.reason, e.message))?;
            out.insert(group, token);
        }
        Ok(out)
    }

    fn groups(&self, spec: &ValidSpec) -> Result<Vec<TokenGroup>, (&'static str, String)> {
        let mut groups = BTreeSet::new();
        if spec.registries.is_empty() {
            let region = spec
                .region
                .clone()
                .or_else(|| self.settings.default_region.clone())
                .ok_or((
                    reason::INVALID_SPEC,
                    "no region: set spec.region or spec.registries, or AWS_REGION for the operator"
                        .to_string(),
                ))?;
            groups.insert(TokenGroup {
                region,
                public: false,
                auth: spec.aws.clone(),
            });
        }
        for r in &spec.registries {
            groups.insert(TokenGroup {
                region: r.region.clone(),
                public: r.public,
                auth: spec.aws.clone(),
            });
        }
        Ok(groups.into_iter().collect())
    }

    /// The Secret payload and annotations for the current tokens, with the refresh point
    /// and expiry they were computed from.
    fn content(
        &self,
        owner: &str,
        spec: &ValidSpec,
        tokens: &BTreeMap<TokenGroup, Arc<RegistryToken>>,
    ) -> Result<Planned, String> {
        let mut entries = BTreeMap::new();
        let mut hosts = Vec::new();
        let mut earliest_refresh: Option<OffsetDateTime> = None;
        let mut earliest_expiry: Option<OffsetDateTime> = None;
        let registries: Vec<(RegistryHost, &Arc<RegistryToken>)> = if spec.registries.is_empty() {
            let (_, token) = tokens.iter().next().ok_or("no token")?;
            let host = token
                .registry_host
                .as_deref()
                .and_then(RegistryHost::from_proxy_endpoint)
                .ok_or("the ECR answer named no registry (proxyEndpoint); set spec.registries")?;
            vec![(host, token)]
        } else {
            spec.registries
                .iter()
                .filter_map(|r| {
                    let t = tokens
                        .iter()
                        .find(|(g, _)| g.region == r.region && g.public == r.public)?;
                    Some((r.clone(), t.1))
                })
                .collect()
        };
        for (host, token) in registries {
            entries.insert(
                host.host.clone(),
                AuthEntry {
                    username: token.username.clone(),
                    password: token.password.clone(),
                    auth: token.auth.clone(),
                },
            );
            hosts.push(host.host);
            let r = refresh_at(token, spec.before_expiry, spec.min_interval);
            earliest_refresh = Some(earliest_refresh.map_or(r, |e| e.min(r)));
            earliest_expiry =
                Some(earliest_expiry.map_or(token.expires_at, |e| e.min(token.expires_at)));
        }
        hosts.sort();
        let data = dockerconfig::encode(&entries);
        let checksum = dockerconfig::checksum(&data);
        let (Some(refresh), Some(expires)) = (earliest_refresh, earliest_expiry) else {
            return Err("no registry to write".into());
        };
        Ok(Planned {
            content: SecretContent {
                owner: owner.to_string(),
                annotations: secret_annotations(
                    owner,
                    expires,
                    refresh,
                    &hosts.join(","),
                    &checksum,
                ),
                data,
            },
            refresh_at: refresh,
            expires_at: expires,
        })
    }

    async fn apply(
        &self,
        owner: &str,
        spec: &ValidSpec,
        plan: &Plan,
        tokens: Option<&BTreeMap<TokenGroup, Arc<RegistryToken>>>,
        secrets: &[ManagedSecret],
    ) -> Applied {
        let mut applied = Applied {
            synced: BTreeSet::new(),
            failures: Vec::new(),
            refresh_at: None,
            expires_at: None,
            wrote_token: false,
            transient: false,
        };
        for (ns, other) in &plan.conflicts {
            applied.failures.push(NamespaceFailure {
                namespace: ns.clone(),
                reason: reason::SECRET_CONFLICT.into(),
                message: format!(
                    "Secret {} is managed for ECRPullSecret {other}",
                    spec.secret_name
                ),
            });
        }
        let content = match tokens.map(|t| self.content(owner, spec, t)) {
            Some(Ok(c)) => Some(c),
            Some(Err(message)) => {
                for step in &plan.secrets {
                    applied.failures.push(NamespaceFailure {
                        namespace: step.namespace().to_string(),
                        reason: reason::AWS_ERROR.into(),
                        message: message.clone(),
                    });
                }
                return applied;
            }
            None => None,
        };
        // Annotations hold whole seconds: compare expiries as written.
        let new_expiry = content.as_ref().map(|p| format_time(p.expires_at));

        // Secrets first: ServiceAccounts only point at Secrets that are ours.
        // At most `write_concurrency` tasks exist at once: a task is allocated at its
        // full future size when spawned, so spawning one per namespace up front made
        // memory grow with the namespace count (about 4 MiB at 1000 namespaces).
        let concurrency = self.settings.write_concurrency.max(1);
        let limit = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        // Indexed once: a scan per namespace was O(namespaces x managed Secrets).
        let ours_by_ns: HashMap<&str, &ManagedSecret> = secrets
            .iter()
            .filter(|s| s.name == spec.secret_name)
            .map(|s| (s.namespace.as_str(), s))
            .collect();
        for step in &plan.secrets {
            let ns = step.namespace().to_string();
            let existing = ours_by_ns.get(ns.as_str()).copied();
            let fresh_until = existing.and_then(|s| s.refresh_at);
            let write = match (step, &content) {
                (SecretStep::Fresh { .. }, _) => None,
                // Due, but the cache handed back the token already in place: the write
                // would change nothing.
                (SecretStep::Update { existing }, Some(_))
                    if existing.intact
                        && new_expiry.as_deref()
                            == existing.expires_at.map(format_time).as_deref()
                        && plan::desired_registries(spec)
                            .is_none_or(|r| r == existing.registries) =>
                {
                    None
                }
                // No token (AWS failed): leave the Secret as it is, not synced.
                (_, None) => continue,
                (step, Some(p)) => Some((step.clone(), p.content.clone())),
            };
            let Some((step, content)) = write else {
                applied.synced.insert(ns);
                if let Some(at) = fresh_until {
                    applied.refresh_at = Some(applied.refresh_at.map_or(at, |e| e.min(at)));
                }
                if let Some(exp) = existing.and_then(|s| s.expires_at) {
                    applied.expires_at = Some(applied.expires_at.map_or(exp, |e| e.min(exp)));
                }
                continue;
            };
            let executor = self.executor.clone();
            let limit = limit.clone();
            let name = spec.secret_name.clone();
            let adopt = spec.adopt_existing;
            while tasks.len() >= concurrency {
                if let Some(joined) = tasks.join_next().await {
                    record_secret_write(&mut applied, &spec.secret_name, joined);
                }
            }
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = match &step {
                    SecretStep::Update { existing } => {
                        executor
                            .refresh_secret(
                                &existing.namespace,
                                &name,
                                &existing.resource_version,
                                &content,
                            )
                            .await
                    }
                    _ => executor.create_secret(&ns, &name, &content, adopt).await,
                };
                (ns, result)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            record_secret_write(&mut applied, &spec.secret_name, joined);
        }
        if applied.wrote_token {
            if let Some(p) = &content {
                applied.refresh_at = Some(
                    applied
                        .refresh_at
                        .map_or(p.refresh_at, |e| e.min(p.refresh_at)),
                );
                applied.expires_at = Some(
                    applied
                        .expires_at
                        .map_or(p.expires_at, |e| e.min(p.expires_at)),
                );
            }
        }

        // ServiceAccounts, and Secrets no longer wanted.
        let mut sa_tasks = JoinSet::new();
        let edits = plan
            .sa_adds
            .iter()
            .filter(|e| applied.synced.contains(&e.sa.namespace))
            .chain(plan.sa_removes.iter())
            .collect::<Vec<_>>();
        for edit in edits {
            let executor = self.executor.clone();
            let limit = limit.clone();
            let edit = edit.clone();
            while sa_tasks.len() >= concurrency {
                if let Some(joined) = sa_tasks.join_next().await {
                    record_sa_write(&mut applied, joined);
                }
            }
            sa_tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let r = executor.edit_service_account(&edit).await;
                (edit.sa.namespace.clone(), edit.sa.name.clone(), r)
            });
        }
        for s in &plan.deletes {
            let executor = self.executor.clone();
            let limit = limit.clone();
            let (ns, name) = (s.namespace.clone(), s.name.clone());
            while sa_tasks.len() >= concurrency {
                if let Some(joined) = sa_tasks.join_next().await {
                    record_sa_write(&mut applied, joined);
                }
            }
            sa_tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let r = executor.delete_secret(&ns, &name).await;
                (ns, name, r)
            });
        }
        while let Some(joined) = sa_tasks.join_next().await {
            record_sa_write(&mut applied, joined);
        }
        applied
    }

    /// Deletion with `deletionPolicy: Delete`: remove what the CR owns, then release.
    async fn finish_deletion(
        &self,
        cr: &EcrPullSecret,
        spec: Option<&ValidSpec>,
        now: OffsetDateTime,
    ) -> Result<Action, ReconcileError> {
        let name = cr.metadata.name.as_deref().unwrap_or_default();
        let policy = spec
            .map(|s| s.deletion_policy)
            .unwrap_or(DeletionPolicy::Delete);
        if policy == DeletionPolicy::Delete {
            // Cleanup concerns only what the CR owns (no Secret is named "").
            let secrets = self.state.managed_secrets_for(name, "");
            let sas = self.state.service_accounts();
            let placeholder;
            let spec = match spec {
                Some(s) => s,
                None => {
                    placeholder = ValidSpec::placeholder();
                    &placeholder
                }
            };
            let plan = plan::plan(
                name,
                spec,
                &Observed {
                    namespaces: &[],
                    secrets: &secrets,
                    service_accounts: &sas,
                },
                now,
                true,
            );
            let applied = self.apply(name, spec, &plan, None, &secrets).await;
            if !applied.failures.is_empty() {
                return Err(ReconcileError {
                    reason: reason::WRITE_FAILED,
                    message: format!("cleanup failed in {} namespaces", applied.failures.len()),
                });
            }
            tracing::info!(
                cr = name,
                secrets = plan.deletes.len(),
                "cleaned up before deletion"
            );
        }
        self.sync_finalizer(cr, false).await?;
        Ok(Action::AwaitChange)
    }

    /// Adds or removes our finalizer with a JSON patch guarded by resourceVersion.
    async fn sync_finalizer(&self, cr: &EcrPullSecret, want: bool) -> Result<(), ReconcileError> {
        let has = cr.metadata.finalizers.iter().any(|f| f == FINALIZER);
        if has == want {
            return Ok(());
        }
        let mut finalizers: Vec<&str> = cr
            .metadata
            .finalizers
            .iter()
            .map(String::as_str)
            .filter(|f| *f != FINALIZER)
            .collect();
        if want {
            finalizers.push(FINALIZER);
        }
        let patch = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": cr.metadata.resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]);
        let name = cr.metadata.name.as_deref().unwrap_or_default();
        self.client
            .patch::<serde_json::Value>(&ECR_PULL_SECRETS.object(None, name), Patch::Json(&patch))
            .await
            .map(|_| ())
            .map_err(|e| ReconcileError {
                reason: reason::WRITE_FAILED,
                message: format!("updating the finalizer: {e}"),
            })
    }

    /// Writes status only when it changed; emits an event when Ready changes.
    async fn write_status(&self, cr: &EcrPullSecret, outcome: &Outcome, now: OffsetDateTime) {
        let name = cr.metadata.name.as_deref().unwrap_or_default();
        // The cache still showing what our last write replaced means it lags behind
        // that write: the written status is the current one.
        let remembered = {
            let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            written
                .get(name)
                .filter(|w| w.uid == cr.metadata.uid && w.before == cr.status)
                .map(|w| w.after.clone())
        };
        let prev = remembered.as_ref().or(cr.status.as_ref());
        let next = status::compute(prev, cr.metadata.generation, outcome, &format_time(now));
        if prev == Some(&next) {
            return;
        }
        let body = status::patch_body(&next);
        if let Err(error) = self
            .client
            .patch_status::<serde_json::Value>(
                &ECR_PULL_SECRETS.object(None, name),
                Patch::Merge(&body),
            )
            .await
        {
            tracing::warn!(cr = name, %error, "could not write status");
            return;
        }
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name.to_string(),
                WrittenStatus {
                    uid: cr.metadata.uid.clone(),
                    before: cr.status.clone(),
                    after: next.clone(),
                },
            );
        if let Some((kind, reason, message)) = status::transition_event(prev, &next) {
            if kind == "Warning" {
                tracing::warn!(cr = name, reason, message, "ECRPullSecret not ready");
            } else {
                tracing::info!(cr = name, reason, message, "ECRPullSecret ready");
            }
            self.events.record(cr, kind, &reason, &message).await;
        }
    }
}

/// Folds one finished Secret write into `applied`.
fn record_secret_write(
    applied: &mut Applied,
    secret_name: &str,
    joined: Result<(String, Result<SecretOutcome, crate::k8s::Error>), tokio::task::JoinError>,
) {
    let Ok((ns, result)) = joined else {
        applied.transient = true;
        return;
    };
    match result {
        Ok(SecretOutcome::Written) => {
            applied.synced.insert(ns);
            applied.wrote_token = true;
        }
        Ok(SecretOutcome::Conflict) => applied.failures.push(NamespaceFailure {
            namespace: ns,
            reason: reason::SECRET_CONFLICT.into(),
            message: format!(
                "a Secret named {secret_name} exists and was not created by this operator; \
                 delete it or set spec.adoptExisting"
            ),
        }),
        Err(e) => {
            applied.transient |= e.is_transient() || e.is_conflict();
            applied.failures.push(NamespaceFailure {
                namespace: ns,
                reason: reason::WRITE_FAILED.into(),
                message: e.to_string(),
            });
        }
    }
}

/// Folds one finished ServiceAccount edit or Secret deletion into `applied`.
fn record_sa_write(
    applied: &mut Applied,
    joined: Result<(String, String, Result<(), crate::k8s::Error>), tokio::task::JoinError>,
) {
    let Ok((ns, object, result)) = joined else {
        applied.transient = true;
        return;
    };
    if let Err(e) = result {
        applied.transient = true;
        applied.synced.remove(&ns);
        applied.failures.push(NamespaceFailure {
            namespace: ns,
            reason: reason::SERVICE_ACCOUNT_FAILED.into(),
            message: format!("{object}: {e}"),
        });
    }
}

fn to_std(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Up to 5% earlier, fixed per CR name, so CRs sharing a schedule do not fire together
/// and a CR's own schedule does not wander.
pub fn jitter(d: Duration, name: &str) -> Duration {
    let h = dockerconfig::checksum(name);
    let frac = u64::from_str_radix(&h[..4], 16).unwrap_or(0) as f64 / 65535.0;
    d.mul_f64(1.0 - 0.05 * frac)
}

/// The future a controller loop drives.
pub trait Reconcile: Send + Sync + 'static {
    fn reconcile(&self, name: &str) -> impl Future<Output = Result<Action, ReconcileError>> + Send;
}

impl<F: FetchToken, S: ObservedState> Reconcile for Reconciler<F, S> {
    fn reconcile(&self, name: &str) -> impl Future<Output = Result<Action, ReconcileError>> + Send {
        Reconciler::reconcile(self, name)
    }
}

#[cfg(test)]
mod observed_state_tests {
    use super::*;

    struct Fixed(Vec<ManagedSecret>);

    impl ObservedState for Fixed {
        fn cr(&self, _: &str) -> Option<EcrPullSecret> {
            None
        }
        fn namespaces(&self) -> Vec<NamespaceView> {
            Vec::new()
        }
        fn managed_secrets(&self) -> Vec<ManagedSecret> {
            self.0.clone()
        }
        fn service_accounts(&self) -> Vec<SaView> {
            Vec::new()
        }
    }

    fn secret(ns: &str, name: &str, owner: &str) -> ManagedSecret {
        ManagedSecret {
            namespace: ns.into(),
            name: name.into(),
            resource_version: "1".into(),
            owner: owner.into(),
            expires_at: None,
            refresh_at: None,
            registries: String::new(),
            intact: true,
        }
    }

    #[test]
    fn a_reconcile_sees_its_own_secrets_and_those_in_its_way_only() {
        let state = Fixed(vec![
            secret("a", "pull", "mine"),
            secret("b", "old-name", "mine"),
            secret("c", "pull", "theirs"),
            secret("d", "other", "theirs"),
        ]);
        let mut seen: Vec<(String, String)> = state
            .managed_secrets_for("mine", "pull")
            .into_iter()
            .map(|s| (s.namespace, s.name))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a".to_string(), "pull".to_string()),
                ("b".to_string(), "old-name".to_string()),
                ("c".to_string(), "pull".to_string()),
            ]
        );
    }
}
