//! The fourth stage of a reconcile: carry the armed step out. It sends what was decided
//! (the finalizer patch, the plan's writes, where the plan reaches for routing) and
//! decides nothing; what came of it goes on to `conclude`.

use std::sync::Arc;

use serde_json::Value;

use super::super::decide::plan::Plan;
use super::super::decide::step::{Apply, Chore, Refusal};
use super::super::execute::apply::{Applied, Applier, Payload};
use super::super::execute::cr_patch::CrPatcher;
use super::super::specs::Specs;
use super::fetch::{Armed, Supply};
use super::{ObservedState, ReconcileError};
use crate::reconcile::decide::spec::EcrPullSecret;

/// What a reconcile did, for its status, metrics and next look.
pub(super) enum Done {
    /// The CR was gone: what was kept for it is forgotten here; `kept` Secrets stay.
    Forgot { name: String, kept: usize },
    /// Nothing was ours to do.
    Idle,
    /// Only a status to report.
    Refused {
        cr: Box<EcrPullSecret>,
        refusal: Refusal,
    },
    /// A deleted CR's cleanup: `Ok` once it is released.
    CleanedUp(Result<(), ReconcileError>),
    /// A live CR's writes.
    Applied(Box<Written>),
    /// A write before any other failed (the finalizer): retried with backoff.
    Failed(ReconcileError),
}

/// Sends what was decided: the only stage that writes a CR's Secrets, ServiceAccounts
/// and finalizer.
pub(super) struct Actor<S> {
    pub(super) patcher: CrPatcher,
    pub(super) applier: Applier,
    /// Where each CR's plan reaches, for routing.
    pub(super) specs: Arc<Specs>,
    /// Takes our finalizer writes ahead of the watch.
    pub(super) state: S,
}

/// A live CR's writes: the step, its tokens and what the writes did.
pub(super) struct Written {
    pub(super) step: Apply,
    pub(super) supply: Supply,
    pub(super) applied: Applied,
}

impl<S: ObservedState> Actor<S> {
    /// Carries `armed` out.
    pub(super) async fn act(&self, armed: Armed) -> Done {
        let chore = match armed {
            Armed::Apply(step, supply) => return self.write(step, supply).await,
            Armed::Chore(chore) => *chore,
        };
        match chore {
            Chore::Forget { name, kept } => {
                self.specs.forget(&name);
                Done::Forgot { name, kept }
            }
            Chore::Idle => Done::Idle,
            Chore::Refuse {
                cr,
                refusal,
                finalizer,
            } => match self.send_finalizer(name_of(&cr), finalizer).await {
                Ok(()) => Done::Refused { cr, refusal },
                Err(e) => Done::Failed(e),
            },
            Chore::Cleanup {
                owner,
                plan,
                release,
            } => Done::CleanedUp(self.clean_up(&owner.name, plan, release).await),
        }
    }

    /// A live CR: our finalizer first (the Secrets are then always cleaned up), the reach
    /// for routing, then the plan. Without a token no Secret is written: existing ones
    /// stay as they are, and what needs no token (fresh namespaces' ServiceAccounts,
    /// Secrets no longer wanted) still goes on.
    async fn write(&self, mut step: Box<Apply>, supply: Supply) -> Done {
        let name = step.owner.name.clone();
        if let Err(e) = self.send_finalizer(&name, step.finalizer.take()).await {
            return Done::Failed(e);
        }
        self.specs.touched(&name, step.plan.reach());
        let payload = match &supply {
            Supply::With {
                fetched: Some(f), ..
            } => Some(Payload {
                content: &f.content,
                secret: &f.secret,
            }),
            _ => None,
        };
        let applied = self
            .applier
            .apply(&step.spec, &mut step.plan, payload)
            .await;
        Done::Applied(Box::new(Written {
            step: *step,
            supply,
            applied,
        }))
    }

    /// Deletion: with a plan (deletionPolicy Delete), remove what the CR owns; the
    /// finalizer stays until everything is gone. Then release the CR.
    async fn clean_up(
        &self,
        name: &str,
        plan: Option<Box<Plan>>,
        release: Option<Value>,
    ) -> Result<(), ReconcileError> {
        if let Some(plan) = plan {
            let applied = self.applier.clean_up(&plan).await;
            if applied.transient || !applied.failures.is_empty() {
                return Err(ReconcileError::CleanupIncomplete);
            }
            tracing::info!(
                cr = name,
                secrets = plan.deletes.len(),
                "cleaned up before deletion"
            );
        }
        self.send_finalizer(name, release).await
    }

    /// Sends a finalizer patch; the answer goes in front of the CR cache.
    async fn send_finalizer(&self, name: &str, patch: Option<Value>) -> Result<(), ReconcileError> {
        let Some(patch) = patch else {
            return Ok(());
        };
        match self.patcher.finalizer(name, &patch).await {
            Ok(written) => {
                self.state.cr_written(written);
                Ok(())
            }
            Err(e) => Err(ReconcileError::Finalizer(e)),
        }
    }
}

fn name_of(cr: &EcrPullSecret) -> &str {
    cr.metadata.name.as_deref().unwrap_or_default()
}
