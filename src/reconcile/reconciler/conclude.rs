//! The last stage of a reconcile: say what came of it. The status (patched when it
//! changed), its events, the CR's metric series, the token groups no CR needs any more,
//! and when the CR is looked at again. The only stage that touches metrics.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::super::decide::plan::Plan;
use super::super::decide::spec::{EcrPullSecret, DEFAULT_TOKEN_LIFETIME};
use super::super::decide::status::{self, EventType, Failure, Outcome};
use super::super::decide::step::{Apply, Refusal};
use super::super::decide::validate::ValidSpec;
use super::super::execute::apply::Applied;
use super::super::execute::cr_patch::CrPatcher;
use super::super::execute::events::EventRecorder;
use super::super::specs::Specs;
use super::super::tokens::{FetchToken, TokenCache};
use super::super::vocab::{format_time, parse_time, saturating_add, Reason};
use super::act::{Done, Written};
use super::fetch::Supply;
use super::{ObservedState, ReconcileError};
use crate::metrics::Metrics;
use crate::runtime::controller::Action;

/// The longest a reconciled CR waits for its next look: a token lives 12 hours, and a
/// requeue computed from an absurd expiry must not park a CR for centuries.
const MAX_REQUEUE: Duration = DEFAULT_TOKEN_LIFETIME;

/// Reports what reconciles did, and keeps the token cache to what the CRs use.
pub(super) struct Reporter<F, S> {
    pub(super) patcher: CrPatcher,
    pub(super) state: S,
    pub(super) events: EventRecorder,
    /// The operator's registry: every CR's series.
    pub(super) metrics: Metrics,
    pub(super) tokens: Arc<TokenCache<F>>,
    pub(super) specs: Arc<Specs>,
    /// `AWS_REGION`, for the token groups of specs that name none.
    pub(super) default_region: Option<String>,
    /// How soon a conflict is looked at again.
    pub(super) conflict_recheck: Duration,
}

impl<F: FetchToken, S: ObservedState> Reporter<F, S> {
    /// Reports what `done` did; the controller's next move for the CR.
    pub(super) async fn conclude(
        &self,
        done: Done,
        now: OffsetDateTime,
    ) -> Result<Action, ReconcileError> {
        match done {
            Done::Applied(written) => self.conclude_apply(*written, now).await,
            Done::Forgot { name, kept } => {
                self.metrics.forget_ecrpullsecret(&name);
                self.prune_tokens();
                if kept > 0 {
                    tracing::info!(cr = name, secrets = kept,
                        "ECRPullSecret deleted with deletionPolicy Retain: keeping its Secrets and ServiceAccount entries");
                }
                Ok(Action::AwaitChange)
            }
            Done::Idle => Ok(Action::AwaitChange),
            Done::Refused { cr, refusal } => {
                let (fatal, result) = match refusal {
                    Refusal::InvalidSpec(message) => {
                        ((Reason::InvalidSpec, message), Ok(Action::AwaitChange))
                    }
                    Refusal::SharedNotListed(name) => (
                        (
                            Reason::WriteFailed,
                            format!("the Secrets named {name} could not be listed yet; retrying"),
                        ),
                        Err(ReconcileError::SharedNotListed { name }),
                    ),
                };
                let outcome = Outcome {
                    fatal: Some(fatal),
                    ..Default::default()
                };
                self.report(&cr, &outcome, None, now).await;
                result
            }
            Done::CleanedUp(result) => result.map(|()| Action::AwaitChange),
            Done::Failed(e) => Err(e),
        }
    }

    async fn conclude_apply(
        &self,
        written: Written,
        now: OffsetDateTime,
    ) -> Result<Action, ReconcileError> {
        let Written {
            step,
            supply,
            applied,
        } = written;
        let Apply {
            cr,
            owner,
            spec,
            plan,
            permission,
            due,
            ..
        } = step;
        // After the fetch: a certificate Secret first watched by it has been read now.
        match permission {
            Ok(()) => self.report_certificate(&owner.name, &spec),
            Err(_) => self.metrics.forget_certificate_expiry(&owner.name),
        }
        let mut outcome = outcome_of(&plan, &applied);
        let result = match supply {
            Supply::Without {
                why: (reason, message),
                verification,
            } => {
                outcome.failures.clear();
                outcome.fatal = Some((reason, message.clone()));
                outcome.verification = verification;
                self.report(&cr, &outcome, due, now).await;
                Err(ReconcileError::NoToken { reason, message })
            }
            Supply::With {
                fetched,
                verification,
                retry,
            } => {
                outcome.credential_sources = fetched.map(|f| f.sources);
                if applied.wrote_token {
                    outcome.last_refresh_time = Some(format_time(now));
                }
                let next = applied
                    .refresh_at
                    .map(|at| at.max(saturating_add(now, spec.min_interval)));
                outcome.next_refresh_time = next.map(format_time);
                outcome.verification = verification;
                self.report(&cr, &outcome, next, now).await;
                if applied.transient {
                    Err(ReconcileError::NamespacesFailed {
                        count: outcome.failures.len(),
                    })
                } else {
                    let conflicts = outcome
                        .failures
                        .iter()
                        .any(|f| f.reason == Reason::SecretConflict);
                    let recheck = conflicts.then_some(self.conflict_recheck);
                    Ok(next_look(&owner.name, next, recheck, retry, now))
                }
            }
        };
        // The CR was edited while this reconcile fetched for its old spec: the pruner
        // ran on the edit, before this reconcile's token group was in, and nothing else
        // would drop it.
        if self.state.cr(&owner.name).map(|c| c.metadata.generation) != Some(cr.metadata.generation)
        {
            self.prune_tokens();
        }
        result
    }

    /// A reconcile of `name` panicked (a bug): say so in its status, so the CR shows
    /// what the log shows, and let the controller retry it with backoff.
    pub(super) async fn report_panic(&self, name: &str) {
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

    /// Drops the token groups (and the fetcher's per-identity state) no cached CR needs.
    /// Called after CRs change; costs one pass over the CRs' cached specs.
    pub(super) fn prune_tokens(&self) {
        let region = self.default_region.as_deref();
        let mut in_use = std::collections::HashSet::new();
        for cr in self.state.crs() {
            let Some(name) = cr.metadata.name.as_deref() else {
                continue;
            };
            if let Ok(spec) = self.specs.valid(name, &cr.spec) {
                in_use.extend(
                    super::super::decide::token::token_groups(&spec, region).unwrap_or_default(),
                );
            }
        }
        self.tokens.retain(&in_use);
    }

    /// The expiry metric of the certificate CR `cr` signs with, once it may use it (an
    /// expired one included: that is what the alert is for).
    fn report_certificate(&self, cr: &str, spec: &ValidSpec) {
        match self.tokens.fetcher().certificate_not_after(&spec.aws) {
            Some(t) => {
                self.metrics
                    .set_certificate_expiry(cr, "roles-anywhere", t.unix_timestamp() as f64)
            }
            None => self.metrics.forget_certificate_expiry(cr),
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
        match self.patcher.status(name, &body).await {
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
fn jitter(d: Duration, name: &str) -> Duration {
    crate::backoff::SplitMix64::fixed_for(name).shave(d, 0.05)
}
