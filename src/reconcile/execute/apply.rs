//! Carries a plan out: Secrets first, then ServiceAccount entries and deletes, each with
//! bounded concurrency, folding every result into what the status reports.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::task::{JoinError, JoinSet};

use super::writes::{MergeOutcome, SecretContent, SecretOutcome, Writer};
use crate::k8s::Error;
use crate::reconcile::decide::content::Content;
use crate::reconcile::decide::plan::{self, MergeStep, Plan, SaEdit, SecretStep, Unmerge};
use crate::reconcile::decide::shared::MergeEdit;
use crate::reconcile::decide::state::ManagedSecret;
use crate::reconcile::decide::status::Failure;
use crate::reconcile::decide::validate::ValidSpec;
use crate::reconcile::vocab::Reason;

/// What applying a plan came to, per namespace.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub synced: BTreeSet<String>,
    pub failures: Vec<Failure>,
    /// Earliest refresh point and expiry of the Secrets now in place.
    pub refresh_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    /// A Secret was written with a new token.
    pub wrote_token: bool,
    /// Something failed that a retry may mend: back off and reconcile again.
    pub transient: bool,
}

impl Applied {
    fn fresh_until(
        &mut self,
        refresh_at: Option<OffsetDateTime>,
        expires_at: Option<OffsetDateTime>,
    ) {
        if let Some(at) = refresh_at {
            self.refresh_at = Some(self.refresh_at.map_or(at, |e| e.min(at)));
        }
        if let Some(at) = expires_at {
            self.expires_at = Some(self.expires_at.map_or(at, |e| e.min(at)));
        }
    }

    fn fail(&mut self, namespace: String, reason: Reason, message: String) {
        self.failures.push(Failure {
            namespace,
            reason,
            message,
        });
    }
}

/// The payload of a reconcile that has tokens: what to write, and what it holds.
pub(crate) struct Payload<'a> {
    pub content: &'a Content,
    pub secret: &'a SecretContent,
}

/// Applies plans through one [`Writer`], at most `concurrency` writes at once per plan.
#[derive(Clone, Debug)]
pub(crate) struct Applier {
    writer: Writer,
    concurrency: usize,
}

// === impl Applier ===

impl Applier {
    pub(crate) fn new(writer: Writer, concurrency: usize) -> Self {
        Applier {
            writer,
            concurrency: concurrency.max(1),
        }
    }

    /// Applies `plan` for `spec`. Without a payload (AWS failed) no Secret is written:
    /// existing ones stay as they are, and only what needs no token goes on.
    pub(crate) async fn apply(
        &self,
        spec: &ValidSpec,
        plan: &mut Plan,
        payload: Option<Payload<'_>>,
    ) -> Applied {
        let mut applied = Applied::default();
        for (ns, why) in &plan.conflicts {
            applied.fail(ns.clone(), Reason::SecretConflict, why.clone());
        }
        // Taken: each step's old projection is freed as its write is answered.
        let secrets = std::mem::take(&mut plan.secrets);
        self.write_secrets(spec, secrets, payload.as_ref(), &mut applied)
            .await;
        self.write_merges(spec, plan, payload.as_ref(), &mut applied)
            .await;
        if applied.wrote_token {
            if let Some(p) = &payload {
                applied.fresh_until(Some(p.content.refresh_at), Some(p.content.expires_at));
            }
        }
        // ServiceAccounts only ever point at Secrets that are ours and in place.
        plan.sa_adds
            .retain(|e| applied.synced.contains(&*e.sa.namespace));
        // Taken, not copied: each edit's view of its ServiceAccount (which the cache has
        // already replaced with the answer) is freed as the edit is answered, instead of
        // all 10,000 living until the reconcile ends.
        let edits = std::mem::take(&mut plan.sa_adds)
            .into_iter()
            .chain(std::mem::take(&mut plan.sa_removes));
        self.edit_service_accounts(edits, &mut applied).await;
        self.delete(std::mem::take(&mut plan.deletes), &mut applied)
            .await;
        self.unmerge(std::mem::take(&mut plan.unmerges), &mut applied)
            .await;
        applied
    }

    /// Removes everything a cleanup plan lists. Only deletes and entry removals.
    pub(crate) async fn clean_up(&self, plan: &Plan) -> Applied {
        let mut applied = Applied::default();
        self.edit_service_accounts(plan.sa_removes.clone(), &mut applied)
            .await;
        self.delete(plan.deletes.clone(), &mut applied).await;
        self.unmerge(plan.unmerges.clone(), &mut applied).await;
        applied
    }

    /// `secretPolicy: Merge`: our entries into each target's shared Secret. Without a
    /// payload (AWS failed) entries in place stand, and nothing is written.
    async fn write_merges(
        &self,
        spec: &ValidSpec,
        plan: &Plan,
        payload: Option<&Payload<'_>>,
        applied: &mut Applied,
    ) {
        let mut writes = Vec::new();
        for step in &plan.merges {
            if step.write && payload.is_some() {
                writes.push(step.clone());
                continue;
            }
            if let Some((refresh_at, expires_at)) = step.in_place {
                applied.fresh_until(Some(refresh_at), Some(expires_at));
                if step.conflicts.is_empty() {
                    applied.synced.insert(step.namespace.clone());
                }
            }
            if !step.conflicts.is_empty() {
                let why = step.conflicts.join("; ");
                applied.fail(step.namespace.clone(), Reason::SecretConflict, why);
            }
        }
        let Some(p) = payload else {
            return;
        };
        let writer = &self.writer;
        let name = &spec.secret_name;
        for_each_bounded(
            writes,
            self.concurrency,
            |step| {
                let edit = MergeEdit {
                    owner: p.secret.owner.clone(),
                    set: p
                        .content
                        .entries
                        .iter()
                        .filter(|(host, _)| step.hosts.contains(host))
                        .map(|(host, entry)| (host.clone(), entry.clone()))
                        .collect(),
                    refresh_at: p.content.refresh_at,
                    expires_at: p.content.expires_at,
                    remove: step.remove.clone(),
                    adopt: spec.adopt_existing,
                };
                let (writer, name) = (writer.clone(), name.clone());
                async move {
                    let result = writer.merge_secret(&step.namespace, &name, &edit).await;
                    (step, result)
                }
            },
            |joined| record_merge(applied, name, joined),
        )
        .await;
    }

    /// Our entries out of shared Secrets no longer targeted: like a delete, retried but
    /// no failure of the CR.
    async fn unmerge(&self, unmerges: Vec<Unmerge>, applied: &mut Applied) {
        let writer = &self.writer;
        let now = OffsetDateTime::now_utc();
        for_each_bounded(
            unmerges,
            self.concurrency,
            |u| {
                let writer = writer.clone();
                async move {
                    let edit = MergeEdit {
                        owner: u.owner.clone(),
                        set: Default::default(),
                        refresh_at: now,
                        expires_at: now,
                        remove: u.hosts.clone(),
                        adopt: false,
                    };
                    let r = writer.merge_secret(&u.namespace, &u.name, &edit).await;
                    (u.namespace, u.name, r.map(|_| ()))
                }
            },
            |joined| match joined {
                Ok((ns, object, r)) => record_side_write(applied, ns, object, false, r),
                Err(_) => applied.transient = true,
            },
        )
        .await;
    }

    /// A failed add leaves a target without its entry: that counts. A failed removal
    /// leaves an entry of ours behind outside the targets: retried, but no target lacks
    /// anything, so it does not make the CR unready.
    async fn edit_service_accounts(
        &self,
        edits: impl IntoIterator<Item = SaEdit>,
        applied: &mut Applied,
    ) {
        let writer = &self.writer;
        for_each_bounded(
            edits,
            self.concurrency,
            |edit| {
                let writer = writer.clone();
                async move {
                    let r = writer.edit_service_account(&edit).await;
                    (
                        edit.sa.namespace.to_string(),
                        edit.sa.name.to_string(),
                        edit.add,
                        r,
                    )
                }
            },
            |joined| match joined {
                Ok((ns, object, counts, r)) => record_side_write(applied, ns, object, counts, r),
                Err(_) => applied.transient = true,
            },
        )
        .await;
    }

    async fn write_secrets(
        &self,
        spec: &ValidSpec,
        secrets: Vec<SecretStep>,
        payload: Option<&Payload<'_>>,
        applied: &mut Applied,
    ) {
        let token = payload.map(|p| (p.content, &p.secret.owner));
        let finalized = plan::finalize(secrets, token, spec);
        for existing in finalized.kept {
            applied.synced.insert(existing.namespace.to_string());
            applied.fresh_until(existing.refresh_at, existing.expires_at);
        }
        let Some(p) = payload else {
            return;
        };
        let writes = finalized.writes;
        let writer = &self.writer;
        let (name, adopt) = (&spec.secret_name, spec.adopt_existing);
        let now = OffsetDateTime::now_utc();
        // One copy of the ~9 KB payload and bodies for every write task.
        let shared = Arc::new(p.secret.clone());
        for_each_bounded(
            writes,
            self.concurrency,
            |step| {
                let (writer, name, content) = (writer.clone(), name.clone(), shared.clone());
                async move {
                    let ns = step.namespace().to_string();
                    let result = match &step {
                        SecretStep::Update { existing } => {
                            writer
                                .refresh_secret(&ns, &name, &existing.resource_version, &content)
                                .await
                        }
                        _ => writer.create_secret(&ns, &name, &content, adopt).await,
                    };
                    // What stays in place if this write fails: a Secret of ours that
                    // still works.
                    let in_place = step
                        .existing()
                        .filter(|e| e.intact && e.expires_at.is_some_and(|t| t > now))
                        .map(|e| (e.refresh_at, e.expires_at));
                    (ns, in_place, result)
                }
            },
            |joined| record_secret_write(applied, name, joined),
        )
        .await;
    }

    /// A Secret no longer wanted that could not be deleted: retried, but it does not
    /// make the CR unready (no target lacks anything).
    async fn delete(&self, deletes: Vec<Arc<ManagedSecret>>, applied: &mut Applied) {
        let writer = &self.writer;
        for_each_bounded(
            deletes,
            self.concurrency,
            |secret| {
                let writer = writer.clone();
                async move {
                    let r = writer.delete_secret(&secret).await;
                    (secret.namespace.to_string(), secret.name.to_string(), r)
                }
            },
            |joined| match joined {
                Ok((ns, object, r)) => record_side_write(applied, ns, object, false, r),
                Err(_) => applied.transient = true,
            },
        )
        .await;
    }
}

/// Runs `work` on each item with at most `limit` in flight, handing each result to
/// `fold` as it lands. A task is allocated at its full size when spawned, so spawning
/// one per namespace up front would make memory grow with the namespace count; a task
/// that panics is folded as a `JoinError` instead of taking the reconcile down.
pub(crate) async fn for_each_bounded<I, W, Fut, T>(
    items: I,
    limit: usize,
    mut work: W,
    mut fold: impl FnMut(Result<T, JoinError>),
) where
    I: IntoIterator,
    W: FnMut(I::Item) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = JoinSet::new();
    for item in items {
        while tasks.len() >= limit.max(1) {
            if let Some(joined) = tasks.join_next().await {
                fold(joined);
            }
        }
        tasks.spawn(work(item));
    }
    while let Some(joined) = tasks.join_next().await {
        fold(joined);
    }
}

/// What a Secret write left: the namespace, the still-valid Secret of ours it was to
/// replace (its refresh point and expiry), and the write's result.
type SecretWrite = (
    String,
    Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)>,
    Result<SecretOutcome, Error>,
);

/// Folds one finished Secret write into `applied`. A write that failed while our
/// still-valid Secret stays in place is retried but is no failure: the namespace holds a
/// working pull secret, so Ready keeps its truth.
fn record_secret_write(
    applied: &mut Applied,
    secret_name: &str,
    joined: Result<SecretWrite, JoinError>,
) {
    let Ok((ns, in_place, result)) = joined else {
        applied.transient = true;
        return;
    };
    if let (Err(e), Some((refresh_at, expires_at))) = (&result, in_place) {
        tracing::debug!(namespace = %ns, error = %e, "refresh failed; the Secret in place is still valid");
        applied.transient = true;
        applied.synced.insert(ns);
        applied.fresh_until(refresh_at, expires_at);
        return;
    }
    match result {
        Ok(SecretOutcome::Written) => {
            applied.synced.insert(ns);
            applied.wrote_token = true;
        }
        Ok(SecretOutcome::Conflict) => applied.fail(
            ns,
            Reason::SecretConflict,
            format!(
                "a Secret named {secret_name} exists that this CR may not replace (not created \
                 by this operator, or a shared pull secret: see spec.secretPolicy Merge); \
                 delete it or set spec.adoptExisting"
            ),
        ),
        Err(e) => {
            applied.transient |= e.is_transient() || e.is_conflict();
            applied.fail(ns, Reason::WriteFailed, e.to_string());
        }
    }
}

/// Folds one finished merge into `applied`. Conflicts the plan foresaw and those the
/// write met on the fresh Secret are reported together; a failed write while our valid
/// entries stay in place is retried but is no failure.
fn record_merge(
    applied: &mut Applied,
    secret_name: &str,
    joined: Result<(MergeStep, Result<MergeOutcome, Error>), JoinError>,
) {
    let Ok((step, result)) = joined else {
        applied.transient = true;
        return;
    };
    let ns = step.namespace;
    match result {
        Ok(MergeOutcome::Merged { conflicts }) => {
            applied.wrote_token |= !step.hosts.is_empty();
            let mut all = step.conflicts;
            for c in conflicts {
                if !all.contains(&c) {
                    all.push(c);
                }
            }
            if all.is_empty() {
                applied.synced.insert(ns);
            } else {
                applied.fail(ns, Reason::SecretConflict, all.join("; "));
            }
        }
        Ok(MergeOutcome::Refused(why)) => applied.fail(
            ns,
            Reason::SecretConflict,
            format!("Secret {secret_name} cannot take this CR's entries: {why}"),
        ),
        Err(e) => match step.in_place {
            Some((refresh_at, expires_at)) if step.conflicts.is_empty() => {
                tracing::debug!(namespace = %ns, error = %e, "merge failed; our entries in place are still valid");
                applied.transient = true;
                applied.synced.insert(ns);
                applied.fresh_until(Some(refresh_at), Some(expires_at));
            }
            _ => {
                applied.transient |= e.is_transient() || e.is_conflict();
                applied.fail(ns, Reason::WriteFailed, e.to_string());
            }
        },
    }
}

/// Folds one finished ServiceAccount edit or Secret deletion into `applied`; `counts`
/// when its failure leaves a target without what it should have.
fn record_side_write(
    applied: &mut Applied,
    ns: String,
    object: String,
    counts: bool,
    result: Result<(), Error>,
) {
    let Err(e) = result else {
        return;
    };
    applied.transient = true;
    if counts {
        applied.synced.remove(&ns);
        applied.fail(ns, Reason::ServiceAccountFailed, format!("{object}: {e}"));
    } else {
        tracing::warn!(namespace = %ns, object, error = %e, "cleanup failed; retrying");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn at_most_limit_tasks_run_and_every_result_is_folded() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut seen = Vec::new();
        for_each_bounded(
            0..50u32,
            4,
            |i| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    if i == 7 {
                        panic!("a bug in one write");
                    }
                    i
                }
            },
            |r| seen.push(r.ok()),
        )
        .await;
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert_eq!(seen.len(), 50);
        assert_eq!(
            seen.iter().filter(|r| r.is_none()).count(),
            1,
            "the panic is folded"
        );
    }
}
