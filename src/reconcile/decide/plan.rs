//! The reconcile decisions as pure functions: from a CR, the cached observed state and
//! the clock to a plan of writes ([`sync`], [`cleanup`]), and, once the tokens are in
//! hand or known to be out of reach, from the plan to the Secret writes to send
//! ([`finalize`]): the executor decides nothing. No I/O here, so every decision is
//! table-tested.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::content::Content;
use super::select::{self, NamespaceView};
use super::state::{ManagedSecret, Ownership, SaView};
use super::validate::ValidSpec;
use crate::reconcile::vocab::{format_time, Owner};

mod merge;
pub(crate) use merge::{sync_merge, unmerges_of, MergeObserved, MergeStep, Rival, Unmerge};

/// What to do with the pull Secret in one target namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SecretStep {
    /// Ours, intact, covering the right registries and not yet due: no write, no token.
    Fresh { existing: Arc<ManagedSecret> },
    /// Absent from our cache: create (a 409 then means a foreign Secret).
    Create { namespace: String },
    /// Ours (or an earlier CR's of our name) but due, edited by hand, or covering other
    /// registries: rewrite.
    Update { existing: Arc<ManagedSecret> },
}

impl SecretStep {
    pub(crate) fn namespace(&self) -> &str {
        match self {
            SecretStep::Create { namespace } => namespace,
            SecretStep::Fresh { existing } | SecretStep::Update { existing } => &existing.namespace,
        }
    }

    /// The Secret in place, if the cache shows one.
    pub(crate) fn existing(&self) -> Option<&ManagedSecret> {
        match self {
            SecretStep::Create { .. } => None,
            SecretStep::Fresh { existing } | SecretStep::Update { existing } => Some(existing),
        }
    }

    /// [`SecretStep::existing`], taken.
    pub(crate) fn into_existing(self) -> Option<Arc<ManagedSecret>> {
        match self {
            SecretStep::Create { .. } => None,
            SecretStep::Fresh { existing } | SecretStep::Update { existing } => Some(existing),
        }
    }
}

/// One ServiceAccount change: add or remove our entry `secret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SaEdit {
    pub sa: Arc<SaView>,
    pub secret: String,
    pub add: bool,
}

/// The new `imagePullSecrets` and ownership list for a ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SaChange {
    pub pull_secrets: Vec<Arc<str>>,
    pub owned: Vec<Arc<str>>,
}

/// Everything one reconcile of one CR intends to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub targets: Vec<String>,
    /// Explicitly listed namespaces that do not exist.
    pub missing: Vec<String>,
    /// Namespaces whose Secret of that name is not the CR's to write, with why.
    pub conflicts: Vec<(String, String)>,
    pub secrets: Vec<SecretStep>,
    /// Secrets of ours no longer wanted (namespace left the selection, name changed, CR
    /// deleted with `deletionPolicy: Delete`).
    pub deletes: Vec<Arc<ManagedSecret>>,
    /// Entries to add, each in a namespace of `secrets`: the executor applies one only
    /// once that namespace's Secret is known to be ours (fresh or written), never next to
    /// a foreign Secret.
    pub sa_adds: Vec<SaEdit>,
    pub sa_removes: Vec<SaEdit>,
    /// `secretPolicy: Merge`: the CR's entries in the shared Secret of each target.
    pub merges: Vec<MergeStep>,
    /// The CR's entries to take out of shared Secrets it no longer targets.
    pub unmerges: Vec<Unmerge>,
}

impl Plan {
    /// Whether any step needs a token (a Secret to write).
    pub(crate) fn needs_token(&self) -> bool {
        self.secrets
            .iter()
            .any(|s| !matches!(s, SecretStep::Fresh { .. }))
            || self.merges.iter().any(|m| m.write)
    }

    /// Where the plan reaches: its targets, listed namespaces still missing, and where it
    /// deletes or unmerges. A change in any of them concerns the CR.
    pub(crate) fn reach(&self) -> impl Iterator<Item = String> + '_ {
        self.targets
            .iter()
            .chain(&self.missing)
            .cloned()
            .chain(self.deletes.iter().map(|s| s.namespace.to_string()))
            .chain(self.unmerges.iter().map(|u| u.namespace.clone()))
    }
}

/// The observed state the planner reads: the watch caches' own values, shared, never
/// copied (a plan over thousands of namespaces holds pointers, not copies).
pub(crate) struct ObservedCluster<'a> {
    pub namespaces: &'a [Arc<NamespaceView>],
    /// The managed Secrets this CR's plan can concern (any owner).
    pub secrets: &'a [Arc<ManagedSecret>],
    pub service_accounts: &'a [Arc<SaView>],
}

/// Plans the writes that bring CR `owner` with `spec` about.
pub(crate) fn sync(
    owner: &Owner,
    spec: &ValidSpec,
    observed: &ObservedCluster<'_>,
    now: OffsetDateTime,
) -> Plan {
    let mut plan = Plan::default();
    let targets = select::target_namespaces(spec, observed.namespaces.iter().map(|n| &**n));
    plan.missing = targets.missing;
    let wanted_registries = desired_registries(spec);

    let by_key: BTreeMap<(&str, &str), &Arc<ManagedSecret>> = observed
        .secrets
        .iter()
        .map(|s| ((&*s.namespace, &*s.name), s))
        .collect();
    let sas_by_ns = service_accounts_by_namespace(observed.service_accounts);

    for ns in &targets.namespaces {
        let step = match by_key.get(&(ns.as_str(), spec.secret_name.as_str())) {
            None => SecretStep::Create {
                namespace: ns.clone(),
            },
            Some(s) => match s.ownership(owner) {
                Ownership::Other(other) => {
                    let why = format!(
                        "Secret {} is managed for ECRPullSecret {other}",
                        spec.secret_name
                    );
                    plan.conflicts.push((ns.clone(), why));
                    continue;
                }
                Ownership::Ours if is_fresh(s, wanted_registries.as_deref(), now) => {
                    SecretStep::Fresh {
                        existing: Arc::clone(s),
                    }
                }
                Ownership::Ours | Ownership::Orphan => SecretStep::Update {
                    existing: Arc::clone(s),
                },
            },
        };
        plan.secrets.push(step);
        plan_service_accounts(&mut plan, spec, &sas_by_ns, ns);
    }
    plan.targets = targets.namespaces;

    // Ours, but no longer wanted where they are.
    for s in observed.secrets {
        let wanted = *s.name == *spec.secret_name
            && plan
                .targets
                .binary_search_by(|t| t.as_str().cmp(&s.namespace))
                .is_ok();
        if !wanted && s.ownership(owner) == Ownership::Ours {
            plan_delete(&mut plan, s, &sas_by_ns);
        }
    }
    plan
}

/// Plans the removal of everything CR `owner` owns (deletion with `deletionPolicy:
/// Delete`). It needs no spec: ownership is recorded on the objects.
pub(crate) fn cleanup(owner: &Owner, observed: &ObservedCluster<'_>) -> Plan {
    let mut plan = Plan::default();
    let sas_by_ns = service_accounts_by_namespace(observed.service_accounts);
    for s in observed.secrets {
        if s.ownership(owner) == Ownership::Ours {
            plan_delete(&mut plan, s, &sas_by_ns);
        }
    }
    plan
}

/// Whether the ServiceAccount `name` is selected (`None` = every ServiceAccount).
pub(crate) fn service_account_selected(selected: &Option<Vec<String>>, name: &str) -> bool {
    match selected {
        None => true,
        Some(list) => list.iter().any(|s| s == name),
    }
}

/// Our entry on the selected ServiceAccounts of target `ns`, and off the others.
pub(super) fn plan_service_accounts(
    plan: &mut Plan,
    spec: &ValidSpec,
    sas_by_ns: &BTreeMap<&str, Vec<&Arc<SaView>>>,
    ns: &str,
) {
    for sa in sas_by_ns.get(ns).into_iter().flatten() {
        let selected = service_account_selected(&spec.service_accounts, &sa.name);
        let edit = SaEdit {
            sa: Arc::clone(sa),
            secret: spec.secret_name.clone(),
            add: selected,
        };
        if change_for(&edit).is_some() {
            if selected {
                plan.sa_adds.push(edit);
            } else {
                plan.sa_removes.push(edit);
            }
        }
    }
}

pub(super) fn service_accounts_by_namespace(
    sas: &[Arc<SaView>],
) -> BTreeMap<&str, Vec<&Arc<SaView>>> {
    let mut by_ns: BTreeMap<&str, Vec<&Arc<SaView>>> = BTreeMap::new();
    for sa in sas {
        by_ns.entry(&*sa.namespace).or_default().push(sa);
    }
    by_ns
}

pub(super) fn plan_delete(
    plan: &mut Plan,
    s: &Arc<ManagedSecret>,
    sas_by_ns: &BTreeMap<&str, Vec<&Arc<SaView>>>,
) {
    plan.deletes.push(Arc::clone(s));
    plan_entry_removals(plan, sas_by_ns, &s.namespace, &s.name);
}

/// Our entries for Secret `secret` off the ServiceAccounts of `ns`.
pub(super) fn plan_entry_removals(
    plan: &mut Plan,
    sas_by_ns: &BTreeMap<&str, Vec<&Arc<SaView>>>,
    ns: &str,
    secret: &str,
) {
    for sa in sas_by_ns.get(ns).into_iter().flatten() {
        let edit = SaEdit {
            sa: Arc::clone(sa),
            secret: secret.to_string(),
            add: false,
        };
        if change_for(&edit).is_some() {
            plan.sa_removes.push(edit);
        }
    }
}

/// Whether a step's Secret must be written with `content`: a due Secret of ours for
/// which the token cache handed back the very token already in place needs no write.
/// The plan's Secret steps, finalized: what to send, and what stays as it is. Owned:
/// each Secret's previous projection goes with its write and is freed when that write
/// is answered, not when the whole reconcile ends (270 bytes a namespace, held by every
/// step of a 10,000-namespace refresh otherwise).
#[derive(Debug, Default)]
pub(crate) struct SecretWrites {
    /// Steps to send, in plan order.
    pub writes: Vec<SecretStep>,
    /// Secrets of ours that stay as they are and count as synced.
    pub kept: Vec<Arc<ManagedSecret>>,
}

/// Turns the plan's Secret steps into writes once the tokens are in hand (`token`: the
/// content they give and the owner it is written for) or known to be out of reach
/// (`None`: a due Secret is left as it is, uncounted; a fresh one stays synced).
pub(crate) fn finalize(
    steps: Vec<SecretStep>,
    token: Option<(&Content, &Owner)>,
    spec: &ValidSpec,
) -> SecretWrites {
    let mut out = SecretWrites::default();
    for step in steps {
        let write = match token {
            Some((content, owner)) => secret_write(&step, content, spec, owner),
            None if matches!(step, SecretStep::Fresh { .. }) => false,
            None => continue,
        };
        if write {
            out.writes.push(step);
        } else if let Some(existing) = step.into_existing() {
            out.kept.push(existing);
        }
    }
    out
}

/// Whether `step` must be written with the token's `content`.
fn secret_write(step: &SecretStep, content: &Content, spec: &ValidSpec, owner: &Owner) -> bool {
    match step {
        SecretStep::Fresh { .. } => false,
        SecretStep::Create { .. } => true,
        SecretStep::Update { existing } => {
            // Annotations hold whole seconds: compare expiries as written.
            let same_token =
                existing.expires_at.map(format_time) == Some(format_time(content.expires_at));
            let same_hosts = desired_registries(spec).is_none_or(|r| *r == *existing.registries);
            // An earlier CR's Secret of our name is taken over: rewritten with our uid.
            let same_owner = existing.owner_uid.as_deref() == Some(owner.uid.as_str());
            !(existing.intact && same_token && same_hosts && same_owner)
        }
    }
}

/// Sorted, comma-joined hosts the spec names; `None` when they come from the token.
pub(crate) fn desired_registries(spec: &ValidSpec) -> Option<String> {
    if spec.registries.is_empty() {
        return None;
    }
    let mut hosts: Vec<&str> = spec.registries.iter().map(|r| r.host.as_str()).collect();
    hosts.sort_unstable();
    Some(hosts.join(","))
}

fn is_fresh(s: &ManagedSecret, registries: Option<&str>, now: OffsetDateTime) -> bool {
    s.intact
        && registries.is_none_or(|r| *r == *s.registries)
        && s.refresh_at.is_some_and(|at| now < at)
}

/// The ServiceAccount change an edit implies, or `None` when nothing changes. An entry
/// someone else added is never claimed, and only entries we added are removed.
pub(crate) fn change_for(edit: &SaEdit) -> Option<SaChange> {
    let sa = &edit.sa;
    let secret = edit.secret.as_str();
    let present = sa.pull_secrets.iter().any(|n| **n == *secret);
    let ours = sa.owned.iter().any(|n| **n == *secret);
    if edit.add {
        if present {
            return None;
        }
        let mut pull_secrets = sa.pull_secrets.clone();
        pull_secrets.push(Arc::from(secret));
        let mut owned = sa.owned.clone();
        if !ours {
            owned.push(Arc::from(secret));
        }
        Some(SaChange {
            pull_secrets,
            owned,
        })
    } else {
        if !ours {
            return None;
        }
        let without =
            |list: &[Arc<str>]| list.iter().filter(|n| ***n != *secret).cloned().collect();
        Some(SaChange {
            pull_secrets: without(&sa.pull_secrets),
            owned: without(&sa.owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::decide::spec::Spec;
    use time::Duration;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-26 12:00 UTC);

    fn spec(json: serde_json::Value) -> ValidSpec {
        serde_json::from_value::<Spec>(json)
            .unwrap()
            .validate(&crate::reconcile::decide::validate::SpecPolicy::default())
            .unwrap()
    }

    fn ns(name: &str) -> NamespaceView {
        NamespaceView {
            name: name.into(),
            labels: Default::default(),
            terminating: false,
        }
    }

    fn arcs<T: Clone>(v: &[T]) -> Vec<Arc<T>> {
        v.iter().cloned().map(Arc::new).collect()
    }

    fn me() -> Owner {
        Owner {
            name: "cr".into(),
            uid: "uid-cr".into(),
        }
    }

    fn secret(ns: &str, name: &str, owner: &str, refresh_in: i64) -> ManagedSecret {
        ManagedSecret {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{ns}-{name}").as_str().into(),
            resource_version: "5".into(),
            owner: owner.into(),
            owner_uid: Some(format!("uid-{owner}").into()),
            expires_at: Some(NOW + Duration::hours(12)),
            refresh_at: Some(NOW + Duration::seconds(refresh_in)),
            registries: "".into(),
            intact: true,
        }
    }

    fn strs(names: &[Arc<str>]) -> Vec<&str> {
        names.iter().map(|n| &**n).collect()
    }

    fn sa(ns: &str, name: &str, pulls: &[&str], owned: &[&str]) -> SaView {
        SaView {
            namespace: ns.into(),
            name: name.into(),
            resource_version: "3".into(),
            pull_secrets: pulls.iter().map(|s| Arc::from(*s)).collect(),
            owned: owned.iter().map(|s| Arc::from(*s)).collect(),
            has_annotations: !owned.is_empty(),
        }
    }

    #[test]
    fn fresh_secret_is_not_rewritten_after_restart() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let secrets = [secret("a", "ecr", "cr", 3600)];
        let sas = [sa("a", "default", &["ecr"], &["ecr"])];
        let nss = [ns("a")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &arcs(&sas),
            },
            NOW,
        );
        assert!(
            matches!(&p.secrets[..], [SecretStep::Fresh { existing }] if &*existing.namespace == "a")
        );
        assert!(!p.needs_token());
        assert!(p.sa_adds.is_empty() && p.sa_removes.is_empty() && p.deletes.is_empty());
    }

    #[test]
    fn due_edited_or_missing_secrets_are_written() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a", "b", "c"]}));
        let mut edited = secret("b", "ecr", "cr", 3600);
        edited.intact = false;
        let secrets = [secret("a", "ecr", "cr", -1), edited];
        let nss = [ns("a"), ns("b"), ns("c")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &[],
            },
            NOW,
        );
        assert!(
            matches!(&p.secrets[0], SecretStep::Update { existing } if &*existing.namespace == "a")
        );
        assert!(
            matches!(&p.secrets[1], SecretStep::Update { existing } if &*existing.namespace == "b")
        );
        assert_eq!(
            p.secrets[2],
            SecretStep::Create {
                namespace: "c".into()
            }
        );
        assert!(p.needs_token());
    }

    #[test]
    fn another_crs_secret_is_a_conflict_and_its_service_accounts_are_left_alone() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let secrets = [secret("a", "ecr", "other", 3600)];
        let sas = [sa("a", "default", &[], &[])];
        let nss = [ns("a")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &arcs(&sas),
            },
            NOW,
        );
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].0, "a");
        assert!(p.conflicts[0].1.contains("ECRPullSecret other"));
        assert!(p.secrets.is_empty() && p.sa_adds.is_empty() && p.deletes.is_empty());
    }

    #[test]
    fn service_account_entries_are_appended_and_foreign_entries_kept() {
        let spec = spec(
            serde_json::json!({"secretName": "ecr", "namespaces": ["a"], "serviceAccounts": ["*"]}),
        );
        let sas = [
            sa("a", "default", &["other"], &[]),
            sa("a", "builder", &["ecr"], &[]),
        ];
        let nss = [ns("a")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &[],
                service_accounts: &arcs(&sas),
            },
            NOW,
        );
        assert_eq!(
            p.sa_adds.len(),
            1,
            "builder already has the entry (not ours: not claimed)"
        );
        let change = change_for(&p.sa_adds[0]).unwrap();
        assert_eq!(strs(&change.pull_secrets), ["other", "ecr"]);
        assert_eq!(strs(&change.owned), ["ecr"]);
    }

    #[test]
    fn namespace_leaving_selection_loses_only_our_secret_and_entry() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let secrets = [
            secret("a", "ecr", "cr", 3600),
            secret("gone", "ecr", "cr", 3600),
            secret("x", "ecr", "other", 3600),
        ];
        let sas = [
            sa("gone", "default", &["keep", "ecr"], &["ecr"]),
            sa("a", "default", &["ecr"], &["ecr"]),
        ];
        let nss = [ns("a"), ns("gone"), ns("x")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &arcs(&sas),
            },
            NOW,
        );
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(&*p.deletes[0].namespace, "gone");
        assert_eq!(p.sa_removes.len(), 1);
        assert_eq!(
            strs(&change_for(&p.sa_removes[0]).unwrap().pull_secrets),
            ["keep"]
        );
    }

    #[test]
    fn cleanup_removes_everything_we_own_and_nothing_else() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let secrets = [
            secret("a", "ecr", "cr", 3600),
            secret("b", "ecr", "other", 3600),
        ];
        let sas = [
            sa("a", "default", &["ecr", "mine"], &["ecr"]),
            sa("b", "default", &["ecr"], &["ecr"]),
        ];
        let nss = [ns("a"), ns("b")];
        let _ = spec;
        let p = cleanup(
            &me(),
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &arcs(&sas),
            },
        );
        assert!(p.secrets.is_empty());
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(p.sa_removes.len(), 1);
        assert_eq!(&*p.sa_removes[0].sa.namespace, "a");
    }

    #[test]
    fn entry_added_by_someone_else_is_never_removed() {
        let edit = SaEdit {
            sa: Arc::new(sa("a", "default", &["ecr"], &[])),
            secret: "ecr".into(),
            add: false,
        };
        assert_eq!(change_for(&edit), None);
    }

    #[test]
    fn deselected_service_account_loses_our_entry() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let secrets = [secret("a", "ecr", "cr", 3600)];
        let sas = [
            sa("a", "builder", &["ecr"], &["ecr"]),
            sa("a", "default", &["ecr"], &["ecr"]),
        ];
        let nss = [ns("a")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &arcs(&sas),
            },
            NOW,
        );
        assert_eq!(p.sa_removes.len(), 1);
        assert_eq!(&*p.sa_removes[0].sa.name, "builder");
    }

    /// What `finalize` sends: with a token, the creates and the steps whose Secret no
    /// longer matches it; without one, nothing, and a fresh Secret still counts as synced
    /// while a due one is neither written nor counted.
    #[test]
    fn finalize_sends_only_what_the_token_changes() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a", "b", "c"]}));
        let fresh = Arc::new(secret("a", "ecr", "cr", 3600));
        let due = Arc::new(secret("b", "ecr", "cr", -1));
        let steps = [
            SecretStep::Fresh {
                existing: fresh.clone(),
            },
            SecretStep::Update {
                existing: due.clone(),
            },
            SecretStep::Create {
                namespace: "c".into(),
            },
        ];
        let none = finalize(steps.to_vec(), None, &spec);
        assert!(none.writes.is_empty());
        assert_eq!(none.kept.len(), 1);
        assert_eq!(&*none.kept[0].namespace, "a");

        // A token whose expiry equals the due Secret's: same token, so only the hosts,
        // owner and intactness could force its rewrite, and none does.
        let content = Content {
            data: String::new(),
            hosts: Vec::new(),
            entries: BTreeMap::new(),
            checksum: String::new(),
            refresh_at: NOW + Duration::hours(6),
            expires_at: NOW + Duration::hours(12),
        };
        let same = finalize(steps.to_vec(), Some((&content, &me())), &spec);
        let written: Vec<&str> = same.writes.iter().map(|s| s.namespace()).collect();
        assert_eq!(written, ["c"]);
        assert_eq!(same.kept.len(), 2);

        // A new token: every Secret of ours not Fresh is rewritten; Fresh is never sent.
        let newer = Content {
            expires_at: NOW + Duration::hours(13),
            ..content
        };
        let new = finalize(steps.to_vec(), Some((&newer, &me())), &spec);
        let written: Vec<&str> = new.writes.iter().map(|s| s.namespace()).collect();
        assert_eq!(written, ["b", "c"]);
        assert_eq!(new.kept.len(), 1);
    }

    #[test]
    fn changed_registries_force_a_rewrite() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"],
            "registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"]}));
        let secrets = [secret("a", "ecr", "cr", 3600)];
        let nss = [ns("a")];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &[],
            },
            NOW,
        );
        assert!(matches!(p.secrets[0], SecretStep::Update { .. }));
    }

    #[test]
    fn an_earlier_crs_secrets_of_the_same_name_are_taken_over_in_targets_and_left_elsewhere() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let mut earlier = secret("a", "ecr", "cr", 3600);
        earlier.owner_uid = Some("uid-deleted".into());
        let mut elsewhere = secret("b", "ecr", "cr", 3600);
        elsewhere.owner_uid = Some("uid-deleted".into());
        let secrets = [earlier, elsewhere];
        let nss = [ns("a"), ns("b")];
        let observed = ObservedCluster {
            namespaces: &arcs(&nss),
            secrets: &arcs(&secrets),
            service_accounts: &[],
        };
        let p = sync(&me(), &spec, &observed, NOW);
        assert!(
            matches!(&p.secrets[..], [SecretStep::Update { existing }] if &*existing.namespace == "a")
        );
        assert!(
            p.deletes.is_empty(),
            "never delete what an earlier CR retained"
        );
        assert!(cleanup(&me(), &observed).deletes.is_empty());
    }

    #[test]
    fn a_secret_without_its_owners_uid_is_ours_and_rewritten_once() {
        let spec = spec(serde_json::json!({"secretName": "ecr", "namespaces": ["a"]}));
        let mut legacy = secret("a", "ecr", "cr", 3600);
        legacy.owner_uid = None;
        legacy.intact = false;
        let nss = [ns("a")];
        let secrets = [legacy];
        let p = sync(
            &me(),
            &spec,
            &ObservedCluster {
                namespaces: &arcs(&nss),
                secrets: &arcs(&secrets),
                service_accounts: &[],
            },
            NOW,
        );
        assert!(matches!(&p.secrets[..], [SecretStep::Update { .. }]));
    }
}
