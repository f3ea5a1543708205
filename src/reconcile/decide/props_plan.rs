//! Properties of the pure planner over random observed states: whatever the cluster looks
//! like, a plan only touches what the CR owns or targets.
//! - it never deletes or rewrites a Secret another CR (or nobody) owns;
//! - it never removes a ServiceAccount entry the ownership annotation does not list, and
//!   an add never drops someone else's entry;
//! - outside the target namespaces it plans only deletes of owned Secrets (and the removal
//!   of their entries);
//! - it adds entries only to selected ServiceAccounts, never next to a foreign Secret.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::reconcile::decide::plan::{self, change_for, ObservedCluster, Plan, SecretStep};
use crate::reconcile::decide::select::NamespaceView;
use crate::reconcile::decide::spec::Spec;
use crate::reconcile::decide::state::{ManagedSecret, Ownership, SaView};
use crate::reconcile::decide::validate::{SpecPolicy, ValidSpec};
use crate::reconcile::vocab::Owner;
use proptest::prelude::*;
use time::OffsetDateTime;

const OWNER: &str = "me";
const OWNER_UID: &str = "uid-me";
const NOW: OffsetDateTime = time::macros::datetime!(2026-11-26 12:00 UTC);
const NAMESPACES: &[&str] = &["a", "b", "team-x", "team-y", "kube-system", "prod"];
const SECRET_NAMES: &[&str] = &["pull", "other"];
const SA_NAMES: &[&str] = &["default", "builder", "ci"];
const ENTRIES: &[&str] = &["pull", "other", "foreign", "regcred"];

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(pool, 0..=pool.len())
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

fn spec() -> impl Strategy<Value = ValidSpec> {
    (
        prop::sample::select(SECRET_NAMES),
        prop::sample::subsequence(vec!["a", "b*", "team-*", "*", "missing", "prod"], 0..=3),
        prop::sample::subsequence(vec!["kube-*", "b", "team-y"], 0..=2),
        prop::option::of(prop::sample::select(vec!["x", "y"])),
        prop::sample::select(vec![
            None,
            Some(vec!["default"]),
            Some(vec!["*"]),
            Some(vec!["builder", "default"]),
            Some(vec![]),
        ]),
        any::<bool>(),
    )
        .prop_filter_map("a servable spec", |(name, nss, excl, team, sas, delete)| {
            let mut v = serde_json::json!({
                "secretName": name,
                "namespaces": nss,
                "excludeNamespaces": excl,
                "serviceAccounts": sas,
                "deletionPolicy": if delete { "Delete" } else { "Retain" },
            });
            if let Some(t) = team {
                v["namespaceSelector"] = serde_json::json!({"matchLabels": {"team": t}});
            }
            serde_json::from_value::<Spec>(v)
                .ok()?
                .validate(&SpecPolicy::default())
                .ok()
        })
}

fn namespaces() -> impl Strategy<Value = Vec<NamespaceView>> {
    prop::collection::vec(
        (
            prop::option::of(prop::sample::select(vec!["x", "y"])),
            any::<bool>(),
        ),
        NAMESPACES.len(),
    )
    .prop_flat_map(|attrs| {
        let n = attrs.len();
        (Just(attrs), prop::collection::vec(any::<bool>(), n))
    })
    .prop_map(|(attrs, present)| {
        NAMESPACES
            .iter()
            .zip(attrs)
            .zip(present)
            .filter(|(_, p)| *p)
            .map(|((name, (team, terminating)), _)| NamespaceView {
                name: name.to_string(),
                labels: team
                    .map(|t| [(Arc::from("team"), Arc::from(t))].into_iter().collect())
                    .unwrap_or_default(),
                terminating: terminating && name.len() % 2 == 0,
            })
            .collect()
    })
}

fn secrets() -> impl Strategy<Value = Vec<ManagedSecret>> {
    prop::collection::vec(
        (
            prop::sample::select(NAMESPACES),
            prop::sample::select(SECRET_NAMES),
            prop::sample::select(vec![OWNER, "someone-else", ""]),
            // This CR's, an earlier CR's of the same name, or written before owner uids.
            prop::sample::select(vec![Some(OWNER_UID), Some("uid-earlier"), None]),
            prop::option::of(-3600i64..3600),
            any::<bool>(),
            prop::sample::select(vec!["", "123456789012.dkr.ecr.us-east-1.amazonaws.com"]),
        ),
        0..10,
    )
    .prop_map(|v| {
        // One object per (namespace, name), as in a real cache.
        let mut seen = BTreeSet::new();
        v.into_iter()
            .filter(|(ns, name, ..)| seen.insert((*ns, *name)))
            .map(
                |(ns, name, owner, owner_uid, refresh, intact, regs)| ManagedSecret {
                    namespace: ns.into(),
                    name: name.into(),
                    uid: format!("uid-{ns}-{name}").as_str().into(),
                    resource_version: "7".into(),
                    owner: owner.into(),
                    owner_uid: owner_uid.map(Arc::from),
                    expires_at: refresh.map(|r| NOW + time::Duration::seconds(r + 3600)),
                    refresh_at: refresh.map(|r| NOW + time::Duration::seconds(r)),
                    registries: regs.into(),
                    intact,
                },
            )
            .collect()
    })
}

fn service_accounts() -> impl Strategy<Value = Vec<SaView>> {
    prop::collection::vec(
        (
            prop::sample::select(NAMESPACES),
            prop::sample::select(SA_NAMES),
            subset(ENTRIES),
            subset(ENTRIES),
        ),
        0..12,
    )
    .prop_map(|v| {
        let mut seen = BTreeSet::new();
        v.into_iter()
            .filter(|(ns, name, ..)| seen.insert((*ns, *name)))
            .map(|(ns, name, pulls, owned)| SaView {
                namespace: ns.into(),
                name: name.into(),
                resource_version: "3".into(),
                has_annotations: !owned.is_empty(),
                pull_secrets: pulls.into_iter().map(Arc::from).collect(),
                owned: owned.into_iter().map(Arc::from).collect(),
            })
            .collect()
    })
}

/// Shared, as the caches hand them out.
fn arcs<T>(v: Vec<T>) -> Vec<std::sync::Arc<T>> {
    v.into_iter().map(std::sync::Arc::new).collect()
}

fn owner() -> Owner {
    Owner {
        name: OWNER.into(),
        uid: OWNER_UID.into(),
    }
}

fn plan_for(spec: &ValidSpec, observed: &ObservedCluster<'_>, cleanup: bool) -> Plan {
    if cleanup {
        plan::cleanup(&owner(), observed)
    } else {
        plan::sync(&owner(), spec, observed, NOW)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_only_touch_what_the_cr_owns_or_targets(
        spec in spec(),
        namespaces in namespaces(),
        secrets in secrets(),
        sas in service_accounts(),
        cleanup in any::<bool>(),
    ) {
        let (namespaces, secrets, sas) = (arcs(namespaces), arcs(secrets), arcs(sas));
        let observed = ObservedCluster {
            namespaces: &namespaces,
            secrets: &secrets,
            service_accounts: &sas,
        };
        let p = plan_for(&spec, &observed, cleanup);
        let targets: BTreeSet<&str> = p.targets.iter().map(String::as_str).collect();
        let existing: BTreeSet<&str> = namespaces.iter().map(|n| n.name.as_str()).collect();
        let terminating: BTreeSet<&str> =
            namespaces.iter().filter(|n| n.terminating).map(|n| n.name.as_str()).collect();
        let deleted_in: BTreeSet<&str> = p.deletes.iter().map(|s| &*s.namespace).collect();
        let conflicted: BTreeSet<&str> = p.conflicts.iter().map(|(ns, _)| ns.as_str()).collect();

        if cleanup {
            prop_assert!(p.secrets.is_empty() && p.sa_adds.is_empty(), "cleanup writes: {p:?}");
        }
        for t in &targets {
            prop_assert!(existing.contains(t), "target {t} does not exist");
            prop_assert!(!terminating.contains(t), "target {t} is terminating");
        }
        // Deletes: ours only (never an earlier CR's of the same name), and never the
        // Secret the CR still wants where it is.
        for d in &p.deletes {
            prop_assert_eq!(d.ownership(&owner()), Ownership::Ours,
                "deletes a Secret it does not own: {:?}", d);
            prop_assert!(secrets.contains(d), "deletes a Secret nobody observed");
            prop_assert!(
                cleanup || *d.name != *spec.secret_name || !targets.contains(&*d.namespace),
                "deletes a wanted Secret {:?}", d
            );
        }
        // Creates and updates: only in targets; updates only of our own Secrets.
        for step in &p.secrets {
            prop_assert!(targets.contains(step.namespace()), "write outside targets: {step:?}");
            prop_assert!(!conflicted.contains(step.namespace()));
            match step {
                SecretStep::Update { existing } => {
                    prop_assert_eq!(&*existing.owner, OWNER);
                    prop_assert_eq!(&*existing.name, spec.secret_name.as_str());
                }
                SecretStep::Create { namespace } => prop_assert!(
                    !secrets.iter().any(|s| *s.namespace == **namespace && *s.name == *spec.secret_name),
                    "creates over an existing Secret in {namespace}"
                ),
                SecretStep::Fresh { .. } => {}
            }
        }
        // A foreign Secret of our name is a conflict, never a write.
        for s in &secrets {
            if &*s.owner != OWNER && *s.name == *spec.secret_name && targets.contains(&*s.namespace) {
                prop_assert!(conflicted.contains(&*s.namespace));
            }
        }
        // ServiceAccount adds: selected accounts, in targets, our Secret name, nothing dropped.
        for add in &p.sa_adds {
            prop_assert!(add.add);
            prop_assert!(plan::service_account_selected(&spec.service_accounts, &add.sa.name),
                "adds to an unselected ServiceAccount {}", add.sa.name);
            prop_assert!(targets.contains(&*add.sa.namespace));
            prop_assert!(!conflicted.contains(&*add.sa.namespace));
            prop_assert_eq!(&add.secret, &spec.secret_name);
            let change = change_for(add).expect("a planned add changes something");
            // Every entry already there stays, in its order and ahead of ours: the kubelet
            // tries imagePullSecrets in order, so their owners' choice comes first.
            let mut expected: Vec<&str> = add.sa.pull_secrets.iter().map(|e| &**e).collect();
            expected.push(&add.secret);
            prop_assert_eq!(
                change.pull_secrets.iter().map(|e| &**e).collect::<Vec<_>>(), expected,
                "an add reordered, dropped or duplicated an entry"
            );
            prop_assert!(change.owned.iter().any(|e| **e == *add.secret));
        }
        // ServiceAccount removes: only entries the ownership annotation lists, only that one,
        // and only in targets or where an owned Secret is being deleted.
        for rm in &p.sa_removes {
            prop_assert!(!rm.add);
            prop_assert!(rm.sa.owned.iter().any(|e| **e == *rm.secret),
                "removes {} which {}'s annotation does not list", rm.secret, rm.sa.name);
            prop_assert!(targets.contains(&*rm.sa.namespace)
                || deleted_in.contains(&*rm.sa.namespace),
                "removes an entry outside the targets without a delete: {rm:?}");
            let change = change_for(rm).expect("a planned remove changes something");
            let kept: Vec<&str> =
                rm.sa.pull_secrets.iter().map(|e| &**e).filter(|e| *e != rm.secret).collect();
            prop_assert_eq!(change.pull_secrets.iter().map(|e| &**e).collect::<Vec<_>>(), kept);
        }
    }
}

/// The generators reach every kind of step, so the properties above are not vacuous.
#[test]
fn generated_states_exercise_every_kind_of_step() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let all = (
        spec(),
        namespaces(),
        secrets(),
        service_accounts(),
        any::<bool>(),
    );
    let mut seen = [0u32; 7];
    for _ in 0..2048 {
        let (spec, namespaces, secrets, sas, cleanup) =
            all.new_tree(&mut runner).unwrap().current();
        let (namespaces, secrets, sas) = (arcs(namespaces), arcs(secrets), arcs(sas));
        let observed = ObservedCluster {
            namespaces: &namespaces,
            secrets: &secrets,
            service_accounts: &sas,
        };
        let p = plan_for(&spec, &observed, cleanup);
        for s in &p.secrets {
            match s {
                SecretStep::Create { .. } => seen[0] += 1,
                SecretStep::Update { .. } => seen[1] += 1,
                SecretStep::Fresh { .. } => seen[2] += 1,
            }
        }
        seen[3] += p.deletes.len() as u32;
        seen[4] += p.sa_adds.len() as u32;
        seen[5] += p.sa_removes.len() as u32;
        seen[6] += p.conflicts.len() as u32;
    }
    assert!(
        seen.iter().all(|n| *n > 0),
        "create, update, fresh, delete, sa add, sa remove, conflict: {seen:?}"
    );
}
