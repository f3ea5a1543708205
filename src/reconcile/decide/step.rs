//! One reconcile's decision, whole: from what was observed of a CR and the cluster to the
//! one step the executor carries out. Pure, like the rest of `decide/`: the reconciler
//! observes first, decides here once, then fetches, writes and reports, so no stage goes
//! back to an earlier one.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use super::grants::{self, Grants};
use super::phase::{self, Phase};
use super::plan::{self, MergeObserved, ObservedCluster, Plan, Rival};
use super::select::{self, NamespaceView};
use super::shared::SharedSecret;
use super::spec::{DeletionPolicy, EcrPullSecret, SecretPolicy};
use super::spec_error::SpecError;
use super::state::{ManagedSecret, SaView};
use super::token::{self, TokenGroup};
use super::validate::ValidSpec;
use crate::reconcile::vocab::{Owner, Reason};

/// What a reconcile read of CR `name` before deciding anything.
pub(crate) enum Observed {
    /// The CR is gone from the cache; `kept` of its Secrets remain (deletionPolicy Retain).
    Gone { name: String, kept: usize },
    /// The CR, and what its phase needs to be planned.
    Present(Box<Present>),
}

/// A CR the cache holds, with everything its plan reads.
pub(crate) struct Present {
    pub cr: EcrPullSecret,
    pub owner: Owner,
    pub spec: Result<Arc<ValidSpec>, SpecError>,
    pub cluster: Cluster,
    /// The grants of the identity a live CR's valid spec names; empty otherwise.
    pub grants: Grants,
}

/// The operator's own settings a decision needs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Context<'a> {
    /// `AWS_REGION`: the region when a CR names none.
    pub region: Option<&'a str>,
    /// The operator's namespace: credentials Secrets there need no grant.
    pub namespace: Option<&'a str>,
}

/// The cluster as the caches hold it, for one CR: shared pointers, never copies.
#[derive(Default)]
pub(crate) struct Cluster {
    pub namespaces: Vec<Arc<NamespaceView>>,
    /// The managed Secrets the CR's plan can concern (see `ObservedState`).
    pub secrets: Vec<Arc<ManagedSecret>>,
    pub service_accounts: Vec<Arc<SaView>>,
    /// Merge: the shared Secrets of the CR's name; `None` while the watch of that name
    /// has not listed.
    pub shared: Option<Vec<Arc<SharedSecret>>>,
    /// Every shared Secret holding hosts recorded for the CR.
    pub holding: Vec<Arc<SharedSecret>>,
    /// The other live CRs with a valid spec: merge rivals, and users of the same
    /// ServiceAccount entries.
    pub others: Vec<Other>,
}

/// Another live CR, as a plan weighs it: shared with the cache and the spec memo.
pub(crate) struct Other {
    pub cr: Arc<EcrPullSecret>,
    pub spec: Arc<ValidSpec>,
}

/// What one reconcile does.
pub(crate) enum Step {
    /// Bring a live CR's Secrets about.
    Apply(Box<Apply>),
    /// Anything else: no token is needed.
    Chore(Box<Chore>),
}

/// A step that needs no token.
pub(crate) enum Chore {
    /// The CR is gone: forget what was kept for it.
    Forget { name: String, kept: usize },
    /// Being deleted without our finalizer: nothing is ours to do.
    Idle,
    /// Nothing to write but a status that says why; `finalizer` is the patch that adds
    /// ours first, if one is due.
    Refuse {
        cr: Box<EcrPullSecret>,
        refusal: Refusal,
        finalizer: Option<Value>,
    },
    /// Deletion: remove what the CR owns (`plan`, with deletionPolicy Delete), then send
    /// `release`, the patch that removes our finalizer.
    Cleanup {
        owner: Owner,
        plan: Option<Box<Plan>>,
        release: Option<Value>,
    },
}

/// Why a CR gets only a status.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Its spec does not validate: nothing to retry until it changes.
    InvalidSpec(String),
    /// The shared Secrets of this name are not listed yet: retried with backoff.
    SharedNotListed(String),
}

/// A live CR's step: its plan, and what its writes and status need.
pub(crate) struct Apply {
    pub cr: EcrPullSecret,
    pub owner: Owner,
    pub spec: Arc<ValidSpec>,
    pub plan: Plan,
    /// The patch that adds our finalizer (deletionPolicy Delete) or removes it, if due.
    pub finalizer: Option<Value>,
    /// The token groups the spec needs; `None` when no region is known.
    pub groups: Option<Vec<TokenGroup>>,
    pub permission: Result<(), (Reason, String)>,
    /// The earliest refresh now due in place: what the status reports when no token can
    /// be had, so the overdue metric stays in the past until a refresh succeeds.
    pub due: Option<OffsetDateTime>,
}

/// The step for what was observed, at `now`.
pub(crate) fn step_for(observed: Observed, context: Context<'_>, now: OffsetDateTime) -> Step {
    let present = match observed {
        Observed::Gone { name, kept } => {
            return Step::Chore(Box::new(Chore::Forget { name, kept }))
        }
        Observed::Present(present) => *present,
    };
    let Present {
        cr,
        owner,
        spec,
        cluster,
        grants,
    } = present;
    match (phase::phase(&cr), spec) {
        (Phase::Released, _) => Step::Chore(Box::new(Chore::Idle)),
        (Phase::Cleanup, spec) => {
            // A spec that no longer validates still carried our finalizer: it asked for
            // Delete when it was added.
            let policy = spec
                .as_ref()
                .map_or(DeletionPolicy::Delete, |s| s.deletion_policy);
            Step::Chore(Box::new(clean_up(cr, owner, policy, &cluster)))
        }
        (Phase::Apply, Err(e)) => Step::Chore(Box::new(Chore::Refuse {
            cr: Box::new(cr),
            refusal: Refusal::InvalidSpec(e.to_string()),
            finalizer: None,
        })),
        (Phase::Apply, Ok(spec)) => apply(cr, owner, spec, cluster, &grants, context, now),
    }
}

fn clean_up(cr: EcrPullSecret, owner: Owner, policy: DeletionPolicy, cluster: &Cluster) -> Chore {
    let release = phase::finalizer_patch(&cr, false);
    if policy != DeletionPolicy::Delete {
        return Chore::Cleanup {
            owner,
            plan: None,
            release,
        };
    }
    // Its hosts in shared Secrets: the watch of its name must have listed.
    if cr.spec.secret_policy == Some(SecretPolicy::Merge) && cluster.shared.is_none() {
        let name = cr.spec.secret_name.clone();
        return Chore::Refuse {
            cr: Box::new(cr),
            refusal: Refusal::SharedNotListed(name),
            finalizer: None,
        };
    }
    let observed = ObservedCluster {
        namespaces: &[],
        secrets: &cluster.secrets,
        service_accounts: &cluster.service_accounts,
    };
    let mut plan = plan::cleanup(&owner, &observed);
    plan::unmerges_of(
        &mut plan,
        &owner,
        &cluster.holding,
        &cluster.service_accounts,
    );
    keep_entries_others_need(&mut plan, cluster);
    Chore::Cleanup {
        owner,
        plan: Some(Box::new(plan)),
        release,
    }
}

fn apply(
    cr: EcrPullSecret,
    owner: Owner,
    spec: Arc<ValidSpec>,
    cluster: Cluster,
    grants: &Grants,
    context: Context<'_>,
    now: OffsetDateTime,
) -> Step {
    let finalizer = phase::finalizer_patch(&cr, spec.deletion_policy == DeletionPolicy::Delete);
    let observed = ObservedCluster {
        namespaces: &cluster.namespaces,
        secrets: &cluster.secrets,
        service_accounts: &cluster.service_accounts,
    };
    let mut plan = match spec.secret_policy {
        SecretPolicy::Own => {
            let mut plan = plan::sync(&owner, &spec, &observed, now);
            // Hosts it merged into shared Secrets before it switched to Own.
            plan::unmerges_of(
                &mut plan,
                &owner,
                &cluster.holding,
                &cluster.service_accounts,
            );
            plan
        }
        SecretPolicy::Merge => {
            let Some(named) = &cluster.shared else {
                return Step::Chore(Box::new(Chore::Refuse {
                    cr: Box::new(cr),
                    refusal: Refusal::SharedNotListed(spec.secret_name.clone()),
                    finalizer,
                }));
            };
            // And any other shared Secret still holding its hosts.
            let others = (cluster.holding.iter()).filter(|s| *s.name != *spec.secret_name);
            let shared: Vec<_> = named.iter().chain(others).cloned().collect();
            let rivals = rivals(&spec, &cluster);
            let merge = MergeObserved {
                shared: &shared,
                rivals: &rivals,
                created: cr
                    .metadata
                    .creation_timestamp
                    .as_deref()
                    .unwrap_or_default(),
            };
            plan::sync_merge(&owner, &spec, &observed, &merge, now)
        }
    };
    keep_entries_others_need(&mut plan, &cluster);
    let permission = grants::permission(&owner.name, grants, context.namespace);
    let groups = token::token_groups(&spec, context.region);
    let due = plan
        .secrets
        .iter()
        .filter_map(|s| s.existing()?.refresh_at)
        .chain(plan.merges.iter().filter_map(|m| Some(m.in_place?.0)))
        .min();
    Step::Apply(Box::new(Apply {
        cr,
        owner,
        spec,
        plan,
        finalizer,
        groups,
        permission,
        due,
    }))
}

/// The other merge CRs writing into Secrets of `spec`'s name, with what they ask for.
fn rivals(spec: &ValidSpec, cluster: &Cluster) -> Vec<Rival> {
    cluster
        .others
        .iter()
        .filter(|o| {
            o.spec.secret_policy == SecretPolicy::Merge && o.spec.secret_name == spec.secret_name
        })
        .map(|o| {
            let targets = select::target_namespaces(&o.spec, namespaces(cluster));
            let meta = &o.cr.metadata;
            Rival {
                name: meta.name.clone().unwrap_or_default(),
                created: meta.creation_timestamp.clone().unwrap_or_default(),
                targets: targets.namespaces.into_iter().collect(),
                hosts: o.spec.registries.iter().map(|r| r.host.clone()).collect(),
            }
        })
        .collect()
}

/// Drops from `plan` the ServiceAccount entries another CR still needs: the annotation
/// records Secret names, not which CR added them, so an entry stays while any other live
/// CR targets that namespace with that Secret name and selects that ServiceAccount (a
/// pod created meanwhile would run without its pull secret). The last CR to leave
/// removes it.
fn keep_entries_others_need(plan: &mut Plan, cluster: &Cluster) {
    if plan.sa_removes.is_empty() {
        return;
    }
    let names: BTreeSet<&str> = plan.sa_removes.iter().map(|e| e.secret.as_str()).collect();
    let others: Vec<_> = cluster
        .others
        .iter()
        .filter(|o| names.contains(o.spec.secret_name.as_str()))
        .map(|o| {
            let targets = select::target_namespaces(&o.spec, namespaces(cluster));
            (&o.spec, targets.namespaces)
        })
        .collect();
    plan.sa_removes.retain(|edit| {
        !others.iter().any(|(spec, targets)| {
            spec.secret_name == edit.secret
                && targets.iter().any(|t| *t == *edit.sa.namespace)
                && plan::service_account_selected(&spec.service_accounts, &edit.sa.name)
        })
    });
}

fn namespaces(cluster: &Cluster) -> impl Iterator<Item = &NamespaceView> {
    cluster.namespaces.iter().map(|n| &**n)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::decide::spec::SecretRef;
    use crate::reconcile::decide::validate::SpecPolicy;
    use crate::reconcile::vocab::FINALIZER;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-06 12:00 UTC);

    /// CR `cr` with `spec`, deleted or not, with our finalizer or not.
    fn present(spec: serde_json::Value, deleting: bool, ours: bool) -> Present {
        let mut cr: EcrPullSecret = serde_json::from_value(json!({
            "metadata": {"name": "cr", "uid": "uid-cr", "resourceVersion": "7"},
            "spec": spec,
        }))
        .unwrap();
        if deleting {
            cr.metadata.deletion_timestamp = Some("2026-12-06T11:00:00Z".into());
        }
        if ours {
            cr.metadata.finalizers.push(FINALIZER.into());
        }
        let spec = cr.spec.validate(&SpecPolicy::default()).map(Arc::new);
        Present {
            owner: Owner {
                name: "cr".into(),
                uid: "uid-cr".into(),
            },
            cr,
            spec,
            cluster: Cluster::default(),
            grants: Grants::default(),
        }
    }

    fn step(present: Present) -> Step {
        let context = Context {
            region: Some("eu-west-1"),
            namespace: Some("ops"),
        };
        step_for(Observed::Present(Box::new(present)), context, NOW)
    }

    fn chore(step: Step) -> Chore {
        match step {
            Step::Chore(chore) => *chore,
            Step::Apply(_) => panic!("expected a chore, got an Apply"),
        }
    }

    fn apply(step: Step) -> Apply {
        match step {
            Step::Apply(apply) => *apply,
            Step::Chore(_) => panic!("expected an Apply, got a chore"),
        }
    }

    fn adds_finalizer(patch: &Option<Value>) -> bool {
        let Some(patch) = patch else { return false };
        patch[1]["value"]
            .as_array()
            .is_some_and(|f| f.iter().any(|v| v == FINALIZER))
    }

    #[test]
    fn a_gone_cr_is_forgotten_and_a_released_one_left_alone() {
        let gone = Observed::Gone {
            name: "cr".into(),
            kept: 3,
        };
        let forget = chore(step_for(gone, Context::default(), NOW));
        assert!(matches!(forget, Chore::Forget { name, kept: 3 } if name == "cr"));
        let spec = json!({"secretName": "s", "namespaces": ["a"]});
        assert!(matches!(
            chore(step(present(spec, true, false))),
            Chore::Idle
        ));
    }

    #[test]
    fn deletion_releases_the_cr_and_plans_a_cleanup_only_for_delete() {
        let retain = json!({"secretName": "s", "namespaces": ["a"]});
        let Chore::Cleanup { plan, release, .. } = chore(step(present(retain, true, true))) else {
            panic!("expected a cleanup")
        };
        assert!(plan.is_none(), "Retain deletes nothing");
        assert!(
            release.is_some() && !adds_finalizer(&release),
            "{release:?}"
        );

        let delete = json!({"secretName": "s", "namespaces": ["a"], "deletionPolicy": "Delete"});
        let Chore::Cleanup { plan, release, .. } = chore(step(present(delete, true, true))) else {
            panic!("expected a cleanup")
        };
        assert!(plan.is_some(), "Delete plans the cleanup");
        assert!(release.is_some());
        // An invalid spec still carried our finalizer: it asked for Delete then.
        let invalid = json!({"secretName": "Not A Name", "namespaces": ["a"]});
        let Chore::Cleanup { plan, .. } = chore(step(present(invalid, true, true))) else {
            panic!("expected a cleanup")
        };
        assert!(plan.is_some());
    }

    #[test]
    fn a_merge_cr_waits_for_its_shared_secrets_to_be_listed() {
        let merge = json!({"secretName": "shared", "namespaces": ["a"], "secretPolicy": "Merge",
            "deletionPolicy": "Delete",
            "registries": ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]});
        let Chore::Refuse {
            refusal, finalizer, ..
        } = chore(step(present(merge.clone(), false, false)))
        else {
            panic!("expected a refusal")
        };
        assert!(matches!(refusal, Refusal::SharedNotListed(name) if name == "shared"));
        assert!(
            adds_finalizer(&finalizer),
            "the finalizer still goes on first"
        );

        let Chore::Refuse { refusal, .. } = chore(step(present(merge.clone(), true, true))) else {
            panic!("expected a refusal")
        };
        assert!(matches!(refusal, Refusal::SharedNotListed(_)));

        let mut listed = present(merge, false, true);
        listed.cluster.shared = Some(Vec::new());
        assert!(matches!(step(listed), Step::Apply(_)));
    }

    #[test]
    fn an_invalid_spec_gets_only_a_status() {
        let invalid = json!({"secretName": "Not A Name", "namespaces": ["a"]});
        let Chore::Refuse {
            refusal, finalizer, ..
        } = chore(step(present(invalid, false, false)))
        else {
            panic!("expected a refusal")
        };
        assert!(matches!(refusal, Refusal::InvalidSpec(m) if m.contains("Not A Name")));
        assert!(finalizer.is_none());
    }

    #[test]
    fn a_live_cr_gets_its_plan_permission_and_token_groups() {
        let spec = json!({"secretName": "s", "namespaces": ["a", "b"], "deletionPolicy": "Delete",
            "aws": {"credentialsSecretRef": {"name": "creds", "namespace": "team"}}});
        let mut cr = present(spec, false, false);
        cr.cluster.namespaces = vec![Arc::new(NamespaceView {
            name: "a".into(),
            labels: Default::default(),
            terminating: false,
        })];
        let refused = SecretRef {
            name: "creds".into(),
            namespace: "team".into(),
        };
        cr.grants.secrets = vec![("credentialsSecretRef", refused, Some(vec!["other".into()]))];
        let step = apply(step(cr));
        assert_eq!(step.plan.targets, ["a"]);
        assert_eq!(step.plan.missing, ["b"]);
        assert!(adds_finalizer(&step.finalizer));
        assert!(
            matches!(&step.permission, Err((Reason::CredentialsNotPermitted, m)) if m.contains("team/creds"))
        );
        let groups = step.groups.unwrap_or_default();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].region, "eu-west-1", "the operator's region");
        assert!(step.due.is_none(), "nothing in place yet");
    }
}
