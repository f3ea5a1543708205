//! One reconcile of one CR, orchestrated: validate (once per spec), plan from the caches,
//! fetch tokens only when a write needs one, apply, report status, events and metrics.
//! The decisions live in `plan` and `content`, the writes in `apply` and `writes`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::decide::phase::{self, Phase};
use super::decide::plan::{self, MergeObserved, ObservedCluster, Plan};
use super::decide::select::NamespaceView;
use super::decide::shared::SharedSecret;
use super::decide::spec::{
    DeletionPolicy, EcrPullSecret, SecretPolicy, SecretRef, DEFAULT_TOKEN_LIFETIME,
};
use super::decide::state::{ManagedSecret, SaView};
use super::decide::status::{self, EventType, Failure, Outcome, Verification};
use super::decide::validate::ValidSpec;
use super::execute::apply::{Applied, Applier, Payload};
use super::execute::events::EventRecorder;
use super::execute::finalizer;
use super::execute::writes::{retrying, WriteThrough, Writer};
use super::specs::Specs;
use super::tokens::{FetchToken, RegistryToken, TokenCache, TokenGroup};
use super::verify::Verifier;
use super::vocab::{format_time, parse_time, saturating_add, Owner, Reason};
use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, Patch};
use crate::metrics::Metrics;
pub(crate) use crate::runtime::controller::Action;

mod error;
mod inputs;

pub(crate) use error::ReconcileError;

/// Read access to the watch caches, so the reconciler sees no wire.
/// The caches also take our writes' answers ([`WriteThrough`]), ahead of the watch.
pub(crate) trait ObservedState: WriteThrough + Clone + Send + Sync + 'static {
    fn cr(&self, name: &str) -> Option<EcrPullSecret>;
    /// Every namespace, shared with the cache (pointers, not copies).
    fn namespaces(&self) -> Vec<Arc<NamespaceView>>;
    /// Every ServiceAccount, shared with the cache.
    fn service_accounts(&self) -> Vec<Arc<SaView>>;
    /// The managed Secrets one CR's plan can concern: those named `secret_name` (ours,
    /// or another CR's in the way) and those `owner` owns elsewhere; `None` for the
    /// owner's only. Never a copy of every managed Secret: with many CRs over many
    /// namespaces that copy dominated memory and CPU.
    fn managed_secrets_for(
        &self,
        owner: &str,
        secret_name: Option<&str>,
    ) -> Vec<Arc<ManagedSecret>>;
    /// The ECRPullSecrets the credentials Secret `secret` grants its use to (its
    /// [`GRANT_ANNOTATION`]), once it has been read; empty when it is missing.
    fn credential_grants(
        &self,
        secret: &SecretRef,
    ) -> impl std::future::Future<Output = Vec<String>> + Send;
    /// Whether a cluster admin granted CR `cr` the use of IAM role `role` (see
    /// `app::role_grants`); `false` while the grants have not been read.
    fn role_granted(&self, cr: &str, role: &str) -> impl std::future::Future<Output = bool> + Send;
    /// Our write of a CR (status, finalizers), as the server answered it: readers see it
    /// until the watch delivers it.
    fn cr_written(&self, cr: EcrPullSecret);
    /// The Secrets named `name` in every namespace (shared pull secrets), once listed: the
    /// watch of that name starts on first use; `None` while it has not listed yet.
    fn shared_secrets(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Option<Vec<Arc<SharedSecret>>>> + Send;
    /// Every watched shared Secret holding hosts recorded for CR `owner`.
    fn shared_secrets_holding(&self, owner: &str) -> Vec<Arc<SharedSecret>>;
    /// Every CR: merge CRs of one `secretName` see each other's claims.
    fn crs(&self) -> Vec<Arc<EcrPullSecret>>;
}

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `AWS_REGION`: the region when a CR names none.
    pub default_region: Option<String>,
    /// Writes in flight at once for one reconcile.
    pub write_concurrency: usize,
    /// How soon a conflict (a foreign Secret our label-filtered watch cannot see) is
    /// looked at again.
    pub conflict_recheck: Duration,
    /// The operator's own namespace: credentials Secrets there need no grant.
    pub operator_namespace: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            operator_namespace: None,
            default_region: None,
            write_concurrency: 16,
            conflict_recheck: Duration::from_secs(60),
        }
    }
}

/// The longest a reconciled CR waits for its next look: a token lives 12 hours, and a
/// requeue computed from an absurd expiry must not park a CR for centuries.
pub(crate) const MAX_REQUEUE: Duration = DEFAULT_TOKEN_LIFETIME;

/// Reconciles `ECRPullSecret`s.
pub(crate) struct Reconciler<F, S> {
    client: Client,
    state: S,
    tokens: Arc<TokenCache<F>>,
    applier: Applier,
    events: EventRecorder,
    settings: Settings,
    /// Validated specs and the namespaces each CR's plan touched, shared with routing.
    specs: Arc<Specs>,
    /// Registry checks, cached per token and host.
    verifier: Arc<Verifier>,
    /// The operator's registry: every CR's series, and the writes' counts.
    metrics: Metrics,
}

/// The tokens a reconcile fetched, by group.
type Tokens = BTreeMap<TokenGroup, Arc<RegistryToken>>;

// === impl Reconciler ===

impl<F: FetchToken, S: ObservedState> Reconciler<F, S> {
    pub(crate) fn new(
        client: Client,
        state: S,
        tokens: Arc<TokenCache<F>>,
        events: EventRecorder,
        settings: Settings,
        specs: Arc<Specs>,
        metrics: Metrics,
    ) -> Self {
        let writer = Writer::new(client.clone())
            .with_cache(Arc::new(state.clone()))
            .with_metrics(metrics.clone());
        Reconciler {
            applier: Applier::new(writer, settings.write_concurrency),
            client,
            state,
            tokens,
            events,
            settings,
            specs,
            verifier: Arc::new(Verifier::disabled()),
            metrics,
        }
    }

    /// Checks each new token at its registries (off unless given).
    #[must_use]
    pub(crate) fn with_verifier(mut self, verifier: Arc<Verifier>) -> Self {
        self.verifier = verifier;
        self
    }

    pub(crate) fn tokens(&self) -> &Arc<TokenCache<F>> {
        &self.tokens
    }

    /// The registry this reconciler reports to (the controller times reconciles into it).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) async fn reconcile(&self, name: &str) -> Result<Action, ReconcileError> {
        let Some(cr) = self.state.cr(name) else {
            self.forget(name);
            let kept = self.state.managed_secrets_for(name, None).len();
            if kept > 0 {
                tracing::info!(cr = name, secrets = kept,
                    "ECRPullSecret deleted with deletionPolicy Retain: keeping its Secrets and ServiceAccount entries");
            }
            return Ok(Action::AwaitChange);
        };
        let owner = Owner {
            name: name.to_string(),
            uid: cr.metadata.uid.clone().unwrap_or_default(),
        };
        let now = OffsetDateTime::now_utc();
        let spec = self.specs.valid(name, &cr.spec);
        match phase::phase(&cr) {
            Phase::Released => Ok(Action::AwaitChange),
            Phase::Cleanup => {
                // A spec that no longer validates still carried our finalizer: it asked
                // for Delete when it was added.
                let policy = spec
                    .as_ref()
                    .map_or(DeletionPolicy::Delete, |s| s.deletion_policy);
                self.clean_up(&cr, &owner, policy).await
            }
            Phase::Apply => match spec {
                Err(e) => {
                    let outcome = Outcome {
                        fatal: Some((Reason::InvalidSpec, e.to_string())),
                        ..Default::default()
                    };
                    self.report(&cr, &outcome, None, now).await;
                    Ok(Action::AwaitChange)
                }
                Ok(spec) => {
                    let want = spec.deletion_policy == DeletionPolicy::Delete;
                    self.set_finalizer(&cr, want).await?;
                    let synced = self.sync(&cr, &owner, &spec, now).await;
                    // The CR was edited while this reconcile fetched for its old spec: the
                    // pruner ran on the edit, before this reconcile's token group was in,
                    // and nothing else would drop it.
                    if self.state.cr(name).map(|c| c.metadata.generation)
                        != Some(cr.metadata.generation)
                    {
                        self.prune_tokens();
                    }
                    synced
                }
            },
        }
    }

    /// A reconcile of `name` panicked (a bug): say so in its status, so the CR shows
    /// what the log shows, and let the controller retry it with backoff.
    pub(crate) async fn report_panic(&self, name: &str) {
        if let Some(cr) = self.state.cr(name) {
            let outcome = Outcome {
                fatal: Some((
                    Reason::ReconcilePanicked,
                    "the reconcile failed on an internal error (a bug; see the operator's log); retrying with backoff".into(),
                )),
                ..Default::default()
            };
            self.report(&cr, &outcome, None, OffsetDateTime::now_utc())
                .await;
        }
    }

    /// The CR is gone: drop what was kept for it, and its metric series.
    fn forget(&self, name: &str) {
        self.specs.forget(name);
        self.metrics.forget_ecrpullsecret(name);
        self.prune_tokens();
    }

    /// Drops the token groups (and the fetcher's per-identity state) no cached CR needs.
    /// Called after CRs change; costs one pass over the CRs' cached specs.
    pub(crate) fn prune_tokens(&self) {
        let region = self.settings.default_region.as_deref();
        let mut in_use = std::collections::HashSet::new();
        for cr in self.state.crs() {
            let Some(name) = cr.metadata.name.as_deref() else {
                continue;
            };
            if let Ok(spec) = self.specs.valid(name, &cr.spec) {
                in_use.extend(
                    super::decide::content::token_groups(&spec, region).unwrap_or_default(),
                );
            }
        }
        self.tokens.retain(&in_use);
    }

    async fn sync(
        &self,
        cr: &EcrPullSecret,
        owner: &Owner,
        spec: &ValidSpec,
        now: OffsetDateTime,
    ) -> Result<Action, ReconcileError> {
        let mut plan = self.plan(cr, owner, spec, now).await?;
        self.keep_entries_others_need(&owner.name, &mut plan);
        self.specs.touched(&owner.name, touched_namespaces(&plan));

        // Every reconcile, whether a token is needed or a cached one would do: a CR not
        // (or no longer) granted its credentials gets no token and no registry check.
        if let Err((reason, message)) = self.permitted(&owner.name, spec).await {
            self.metrics.forget_certificate_expiry(&owner.name);
            let withheld = Some(Verification::Withheld);
            return Err(self
                .without_tokens(cr, spec, &mut plan, (reason, message), withheld, now)
                .await);
        }
        self.report_certificate(&owner.name, spec);
        let (tokens, payload) = if plan.needs_token() {
            match self.payload(owner, spec, now).await {
                Ok((tokens, content, secret)) => (Some(tokens), Some((content, secret))),
                Err(why) => {
                    return Err(self
                        .without_tokens(cr, spec, &mut plan, why, None, now)
                        .await)
                }
            }
        } else {
            (None, None)
        };
        let applied = self
            .applier
            .apply(
                spec,
                &mut plan,
                payload
                    .as_ref()
                    .map(|(content, secret)| Payload { content, secret }),
            )
            .await;
        let mut outcome = outcome_of(&plan, &applied);
        outcome.credential_sources = tokens.as_ref().map(|t| self.credential_sources(spec, t));
        if applied.wrote_token {
            outcome.last_refresh_time = Some(format_time(now));
        }
        let next = applied
            .refresh_at
            .map(|at| at.max(saturating_add(now, spec.min_interval)));
        outcome.next_refresh_time = next.map(format_time);
        // After the writes: the Secret is written whatever the registry says.
        let (verification, retry) = self.verify(&owner.name, spec, tokens.as_ref(), now);
        outcome.verification = verification;
        self.report(cr, &outcome, next, now).await;

        if applied.transient {
            return Err(ReconcileError::NamespacesFailed {
                count: outcome.failures.len(),
            });
        }
        let conflicts = outcome
            .failures
            .iter()
            .any(|f| f.reason == Reason::SecretConflict);
        let recheck = conflicts.then_some(self.settings.conflict_recheck);
        Ok(next_look(&owner.name, next, recheck, retry, now))
    }

    /// What `spec` asks of the cluster as the caches see it.
    async fn plan(
        &self,
        cr: &EcrPullSecret,
        owner: &Owner,
        spec: &ValidSpec,
        now: OffsetDateTime,
    ) -> Result<Plan, ReconcileError> {
        let namespaces = self.state.namespaces();
        let secrets = self
            .state
            .managed_secrets_for(&owner.name, Some(&spec.secret_name));
        let sas = self.state.service_accounts();
        let observed = ObservedCluster {
            namespaces: &namespaces,
            secrets: &secrets,
            service_accounts: &sas,
        };
        Ok(match spec.secret_policy {
            SecretPolicy::Own => {
                let mut plan = plan::sync(owner, spec, &observed, now);
                // Hosts it merged into shared Secrets before it switched to Own.
                let shared = self.state.shared_secrets_holding(&owner.name);
                plan::unmerges_of(&mut plan, owner, &shared, &sas);
                plan
            }
            SecretPolicy::Merge => {
                let shared = self.shared_secrets(cr, owner, &spec.secret_name).await?;
                let rivals = self.rivals(&owner.name, spec, &namespaces);
                let merge = MergeObserved {
                    shared: &shared,
                    rivals: &rivals,
                    created: cr
                        .metadata
                        .creation_timestamp
                        .as_deref()
                        .unwrap_or_default(),
                };
                plan::sync_merge(owner, spec, &observed, &merge, now)
            }
        })
    }

    /// No token could be had: existing Secrets stay as they are; what needs no token
    /// (fresh namespaces' ServiceAccounts, Secrets no longer wanted) still goes on, and
    /// the status says why. The error to retry with.
    async fn without_tokens(
        &self,
        cr: &EcrPullSecret,
        spec: &ValidSpec,
        plan: &mut Plan,
        (reason, message): (Reason, String),
        verification: Option<Verification>,
        now: OffsetDateTime,
    ) -> ReconcileError {
        // The refresh that is now overdue: the metric keeps it in the past until a
        // refresh succeeds, which is what an alert watches for.
        let due = plan
            .secrets
            .iter()
            .filter_map(|s| s.existing()?.refresh_at)
            .chain(plan.merges.iter().filter_map(|m| Some(m.in_place?.0)))
            .min();
        let applied = self.applier.apply(spec, plan, None).await;
        let mut outcome = outcome_of(plan, &applied);
        outcome.failures.clear();
        outcome.fatal = Some((reason, message.clone()));
        outcome.verification = verification;
        self.report(cr, &outcome, due, now).await;
        ReconcileError::NoToken { reason, message }
    }

    /// Deletion: with `Delete`, remove what the CR owns; then release the CR.
    async fn clean_up(
        &self,
        cr: &EcrPullSecret,
        owner: &Owner,
        policy: DeletionPolicy,
    ) -> Result<Action, ReconcileError> {
        if policy == DeletionPolicy::Delete {
            let secrets = self.state.managed_secrets_for(&owner.name, None);
            let sas = self.state.service_accounts();
            let mut plan = plan::cleanup(
                owner,
                &ObservedCluster {
                    namespaces: &[],
                    secrets: &secrets,
                    service_accounts: &sas,
                },
            );
            // Its hosts in shared Secrets: the watch of its name must have listed.
            if cr.spec.secret_policy == Some(SecretPolicy::Merge) {
                self.shared_secrets(cr, owner, &cr.spec.secret_name).await?;
            }
            let shared = self.state.shared_secrets_holding(&owner.name);
            plan::unmerges_of(&mut plan, owner, &shared, &sas);
            self.keep_entries_others_need(&owner.name, &mut plan);
            let applied = self.applier.clean_up(&plan).await;
            if applied.transient || !applied.failures.is_empty() {
                // The finalizer stays until everything the CR owns is gone.
                return Err(ReconcileError::CleanupIncomplete);
            }
            tracing::info!(
                cr = owner.name,
                secrets = plan.deletes.len(),
                "cleaned up before deletion"
            );
        }
        self.set_finalizer(cr, false).await?;
        Ok(Action::AwaitChange)
    }

    /// Adds or removes our finalizer; the answer goes in front of the CR cache.
    async fn set_finalizer(&self, cr: &EcrPullSecret, want: bool) -> Result<(), ReconcileError> {
        match finalizer::set(&self.client, cr, want).await {
            Ok(written) => {
                if let Some(written) = written {
                    self.state.cr_written(written);
                }
                Ok(())
            }
            Err(e) => Err(ReconcileError::Finalizer(e)),
        }
    }

    /// Writes status when it changed, emits an event when Ready changes, and keeps the
    /// CR's metrics current.
    async fn report(
        &self,
        cr: &EcrPullSecret,
        outcome: &Outcome,
        next_refresh: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) {
        let name = cr.metadata.name.as_deref().unwrap_or_default();
        // `cr` comes from the cache, which holds our last status write ahead of the watch.
        let report = status::report(
            cr.status.as_ref(),
            cr.metadata.generation,
            outcome,
            &format_time(now),
        );
        let next = &report.status;
        self.metrics.set_ecrpullsecret(
            name,
            report.ready,
            next.expires_at.as_deref().and_then(unix_time),
            next_refresh.map(|t| t.unix_timestamp() as f64),
        );
        if report.verified {
            let last = next
                .registries
                .iter()
                .filter_map(|r| unix_time(&r.checked_at))
                .fold(f64::MIN, f64::max);
            self.metrics.set_registry_verified(name, last);
        }
        let Some((body, events)) = report.change else {
            return;
        };
        let path = ECR_PULL_SECRETS.object(None, name);
        match retrying(|| {
            self.client
                .patch_status::<EcrPullSecret>(&path, Patch::Merge(&body))
        })
        .await
        {
            Ok(written) => self.state.cr_written(written),
            Err(error) => {
                tracing::warn!(cr = name, %error, "could not write status");
                return;
            }
        }
        for (kind, reason, message) in events {
            match kind {
                EventType::Warning => {
                    tracing::warn!(
                        cr = name,
                        reason,
                        message,
                        "ECRPullSecret condition turned False"
                    )
                }
                EventType::Normal => {
                    tracing::info!(
                        cr = name,
                        reason,
                        message,
                        "ECRPullSecret condition changed"
                    )
                }
            }
            self.events.record(cr, kind, &reason, &message).await;
        }
    }
}

/// Where a plan reaches: its targets, listed namespaces still missing, and where it
/// deletes. A change in any of them concerns the CR.
fn touched_namespaces(plan: &Plan) -> impl Iterator<Item = String> + '_ {
    plan.targets
        .iter()
        .chain(&plan.missing)
        .cloned()
        .chain(plan.deletes.iter().map(|s| s.namespace.to_string()))
        .chain(plan.unmerges.iter().map(|u| u.namespace.clone()))
}

/// The status counts of an applied plan: targets include listed namespaces that do not
/// exist, which are failures too.
fn outcome_of(plan: &Plan, applied: &Applied) -> Outcome {
    let mut failures = applied.failures.clone();
    failures.extend(plan.missing.iter().map(|ns| Failure {
        namespace: ns.clone(),
        reason: Reason::NamespaceNotFound,
        message: format!("namespace {ns} does not exist"),
    }));
    Outcome {
        targets: (plan.targets.len() + plan.missing.len()) as u32,
        synced: applied.synced.len() as u32,
        failures,
        expires_at: applied.expires_at.map(format_time),
        ..Default::default()
    }
}

/// When a synced CR is looked at again: the earliest of its refresh, a conflict's
/// recheck and a failed registry check's retry, jittered per CR and capped at
/// [`MAX_REQUEUE`]. None of them: a watch event brings the CR back.
fn next_look(
    name: &str,
    refresh: Option<OffsetDateTime>,
    recheck: Option<Duration>,
    retry: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Action {
    let wait = [
        refresh.map(|at| to_std(at - now)),
        recheck,
        retry.map(|at| to_std(at - now)),
    ]
    .into_iter()
    .flatten()
    .min();
    match wait {
        None => Action::AwaitChange,
        Some(wait) => Action::Requeue(jitter(wait.min(MAX_REQUEUE), name)),
    }
}

fn unix_time(rfc3339: &str) -> Option<f64> {
    parse_time(rfc3339).map(|t| t.unix_timestamp() as f64)
}

fn to_std(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Up to 5% earlier, fixed per CR name, so CRs sharing a schedule do not fire together
/// and a CR's own schedule does not wander.
pub(crate) fn jitter(d: Duration, name: &str) -> Duration {
    crate::backoff::SplitMix64::fixed_for(name).shave(d, 0.05)
}
