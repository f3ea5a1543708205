//! The plan of a CR with `secretPolicy: Merge`: in each target namespace, its registry
//! entries in the shared Secret of its name; out of the shared Secrets it no longer
//! targets. Whether a host may be written is decided again on the freshly read Secret
//! when writing (`shared::edit`); the plan decides whether a write is due at all, which
//! hosts it may claim, and what to report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use time::OffsetDateTime;

use super::{
    plan_delete, plan_entry_removals, plan_service_accounts, service_accounts_by_namespace,
    ObservedCluster, Plan,
};
use crate::reconcile::decide::select;
use crate::reconcile::decide::shared::{MergedHost, Refusal, Shape, SharedSecret};
use crate::reconcile::decide::state::{Ownership, SaView};
use crate::reconcile::decide::validate::ValidSpec;
use crate::reconcile::vocab::Owner;

/// A merge CR's step in one target namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MergeStep {
    pub namespace: String,
    /// Write (creating the Secret when absent); else our entries are in place.
    pub write: bool,
    /// The hosts this CR may write there.
    pub hosts: Vec<String>,
    /// Hosts of this CR's there that it no longer asks for.
    pub remove: Vec<String>,
    /// Hosts the CR asks for there that are not its to write, each with why.
    pub conflicts: Vec<String>,
    /// When all of our entries are there, intact and unexpired: their earliest refresh
    /// point and expiry.
    pub in_place: Option<(OffsetDateTime, OffsetDateTime)>,
}

/// The CR's hosts to take out of a shared Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unmerge {
    pub owner: Owner,
    pub namespace: String,
    pub name: String,
    pub hosts: Vec<String>,
}

/// Another merge CR of the same `secretName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rival {
    pub name: String,
    /// Its creationTimestamp: of two CRs asking for a free host, the older claims it.
    pub created: String,
    pub targets: BTreeSet<String>,
    pub hosts: Vec<String>,
}

/// What merge planning reads beyond [`ObservedCluster`].
pub(crate) struct MergeObserved<'a> {
    /// The Secrets named as the CR's `secretName`, and any other holding its hosts.
    pub shared: &'a [Arc<SharedSecret>],
    pub rivals: &'a [Rival],
    /// The CR's own creationTimestamp.
    pub created: &'a str,
}

/// Plans the writes that bring merge CR `owner` with `spec` about.
pub(crate) fn sync_merge(
    owner: &Owner,
    spec: &ValidSpec,
    observed: &ObservedCluster<'_>,
    merge: &MergeObserved<'_>,
    now: OffsetDateTime,
) -> Plan {
    let mut plan = Plan::default();
    let targets = select::target_namespaces(spec, observed.namespaces.iter().map(|n| &**n));
    plan.missing = targets.missing;
    let sas_by_ns = service_accounts_by_namespace(observed.service_accounts);
    let by_ns: BTreeMap<&str, &Arc<SharedSecret>> = merge
        .shared
        .iter()
        .filter(|s| *s.name == *spec.secret_name)
        .map(|s| (&*s.namespace, s))
        .collect();
    let wanted: Vec<&str> = spec.registries.iter().map(|r| r.host.as_str()).collect();
    for ns in &targets.namespaces {
        let claims = Claims {
            owner,
            merge,
            namespace: ns,
        };
        let step = match by_ns.get(ns.as_str()) {
            None => claims.absent(&wanted),
            Some(s) => match claims.step(spec, &wanted, s, now) {
                Ok(step) => step,
                Err(why) => {
                    plan.conflicts.push((ns.clone(), why.to_string()));
                    continue;
                }
            },
        };
        plan.merges.push(step);
        plan_service_accounts(&mut plan, spec, &sas_by_ns, ns);
    }
    let target_set: BTreeSet<&str> = targets.namespaces.iter().map(String::as_str).collect();
    let targeted = |ns: &str, name: &str| name == spec.secret_name && target_set.contains(ns);
    for s in merge.shared {
        if !targeted(&s.namespace, &s.name) {
            unmerge(&mut plan, owner, s, &sas_by_ns);
        }
    }
    // Secrets this CR wrote whole (before it switched to Merge, or under another name).
    for s in observed.secrets {
        if !targeted(&s.namespace, &s.name) && s.ownership(owner) == Ownership::Ours {
            plan_delete(&mut plan, s, &sas_by_ns);
        }
    }
    plan.targets = targets.namespaces;
    plan
}

/// Takes CR `owner`'s hosts out of every shared Secret (deletion with `deletionPolicy:
/// Delete`).
pub(crate) fn unmerges_of(
    plan: &mut Plan,
    owner: &Owner,
    shared: &[Arc<SharedSecret>],
    service_accounts: &[Arc<SaView>],
) {
    // Called on every reconcile of every CR; most hold no host in any shared Secret,
    // and indexing every ServiceAccount for nothing showed in the refresh profile.
    if shared.is_empty() {
        return;
    }
    let sas_by_ns = service_accounts_by_namespace(service_accounts);
    for s in shared {
        unmerge(plan, owner, s, &sas_by_ns);
    }
}

/// This CR's hosts out of `s`, and its entries for `s` off the namespace's
/// ServiceAccounts. An earlier CR's of the same name are never removed on its behalf.
fn unmerge(
    plan: &mut Plan,
    owner: &Owner,
    s: &SharedSecret,
    sas_by_ns: &BTreeMap<&str, Vec<&Arc<SaView>>>,
) {
    let hosts: Vec<String> = s
        .hosts_of(&owner.name)
        .filter(|h| *h.owner_uid == *owner.uid)
        .map(|h| h.host.to_string())
        .collect();
    if hosts.is_empty() {
        return;
    }
    plan.unmerges.push(Unmerge {
        owner: owner.clone(),
        namespace: s.namespace.to_string(),
        name: s.name.to_string(),
        hosts,
    });
    plan_entry_removals(plan, sas_by_ns, &s.namespace, &s.name);
}

/// Who may claim which host in one namespace's shared Secret.
struct Claims<'a> {
    owner: &'a Owner,
    merge: &'a MergeObserved<'a>,
    namespace: &'a str,
}

impl Claims<'_> {
    /// Another merge CR asking for `host` here.
    fn rival(&self, host: &str) -> Option<&Rival> {
        self.merge
            .rivals
            .iter()
            .find(|r| r.targets.contains(self.namespace) && r.hosts.iter().any(|h| h == host))
    }

    /// An older merge CR asking for free `host` here, which claims it first.
    fn claimed_first(&self, host: &str) -> Option<&Rival> {
        let me = (self.merge.created, self.owner.name.as_str());
        self.merge.rivals.iter().find(|r| {
            r.targets.contains(self.namespace)
                && r.hosts.iter().any(|h| h == host)
                && (r.created.as_str(), r.name.as_str()) < me
        })
    }

    /// No Secret of that name: create it, with the hosts no older CR claims.
    fn absent(&self, wanted: &[&str]) -> MergeStep {
        let mut step = self.empty_step();
        for host in wanted {
            match self.claimed_first(host) {
                Some(r) => step.conflicts.push(claimed_first(r, host)),
                None => step.hosts.push(host.to_string()),
            }
        }
        step.write = !step.hosts.is_empty();
        step
    }

    /// A Secret of that name exists: what is ours there, what is due, what is not ours.
    /// `Err`: nothing may be written there, and why.
    fn step(
        &self,
        spec: &ValidSpec,
        wanted: &[&str],
        s: &SharedSecret,
        now: OffsetDateTime,
    ) -> Result<MergeStep, MergeRefused> {
        let (created_by_us, own_policy, hosts, unrecorded) = self.pull_shape(s)?;
        let mut step = self.empty_step();
        // A Secret this CR wrote whole is turned into a shared one.
        let mut due = own_policy;
        let mut in_place: Option<(OffsetDateTime, OffsetDateTime)> = None;
        let mut all_in_place = true;
        for host in wanted {
            match hosts.iter().find(|m| *m.host == **host) {
                Some(m) if *m.owner == *self.owner.name => {
                    step.hosts.push(host.to_string());
                    if let Some(r) = self.rival(host) {
                        step.conflicts.push(format!(
                            "ECRPullSecret {} also asks for host {host} in this Secret; it \
                             stays with this ECRPullSecret",
                            r.name
                        ));
                    }
                    let valid = *m.owner_uid == *self.owner.uid
                        && m.intact
                        && m.expires_at.is_some_and(|t| now < t);
                    match (valid, m.refresh_at, m.expires_at) {
                        (true, Some(refresh), Some(expires)) => {
                            due |= now >= refresh;
                            in_place = Some(match in_place {
                                None => (refresh, expires),
                                Some((r, e)) => (r.min(refresh), e.min(expires)),
                            });
                        }
                        _ => {
                            due = true;
                            all_in_place = false;
                        }
                    }
                }
                Some(m) => step.conflicts.push(format!(
                    "host {host} is maintained in this Secret for ECRPullSecret {}",
                    m.owner
                )),
                None if unrecorded.iter().any(|u| **u == **host)
                    && !(spec.adopt_existing || created_by_us) =>
                {
                    step.conflicts.push(format!(
                        "host {host} has an entry in this Secret that this operator did not \
                         write; remove it, or set spec.adoptExisting to take it over"
                    ))
                }
                None => match self.claimed_first(host) {
                    Some(r) => step.conflicts.push(claimed_first(r, host)),
                    None => {
                        step.hosts.push(host.to_string());
                        due = true;
                        all_in_place = false;
                    }
                },
            }
        }
        step.remove = hosts
            .iter()
            .filter(|m| *m.owner == *self.owner.name && *m.owner_uid == *self.owner.uid)
            .filter(|m| !wanted.contains(&&*m.host))
            .map(|m| m.host.to_string())
            .collect();
        due |= !step.remove.is_empty();
        step.write = due && (!step.hosts.is_empty() || !step.remove.is_empty());
        step.in_place = in_place.filter(|_| all_in_place);
        Ok(step)
    }

    /// `s` as a pull secret this CR may merge into: (created by this CR, written whole
    /// by the operator, its recorded hosts, hosts with entries nobody recorded).
    #[allow(clippy::type_complexity)]
    fn pull_shape<'s>(
        &self,
        s: &'s SharedSecret,
    ) -> Result<(bool, bool, &'s [MergedHost], &'s [Arc<str>]), MergeRefused> {
        let (created_by, own_policy, hosts, unrecorded) = match &s.shape {
            Shape::Refused(r) => {
                return Err(MergeRefused::Refused {
                    secret: s.name.to_string(),
                    why: r.clone(),
                })
            }
            Shape::Pull {
                created_by,
                own_policy,
                hosts,
                unrecorded,
            } => (created_by, *own_policy, hosts, unrecorded),
        };
        let created_by_us = created_by.as_deref() == Some(self.owner.name.as_str());
        if own_policy && !created_by_us {
            return Err(MergeRefused::OwnedWhole {
                secret: s.name.to_string(),
                owner: created_by.as_deref().unwrap_or("?").to_string(),
            });
        }
        Ok((created_by_us, own_policy, hosts, unrecorded))
    }

    fn empty_step(&self) -> MergeStep {
        MergeStep {
            namespace: self.namespace.to_string(),
            write: false,
            hosts: Vec::new(),
            remove: Vec::new(),
            conflicts: Vec::new(),
            in_place: None,
        }
    }
}

/// Why nothing of this CR's may be written into an existing Secret; shown as a conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum MergeRefused {
    /// The Secret is of a shape that is never merged into.
    Refused { secret: String, why: Refusal },
    /// Another CR owns the whole Secret (`secretPolicy: Own`).
    OwnedWhole { secret: String, owner: String },
}

impl std::fmt::Display for MergeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeRefused::Refused { secret, why } => {
                write!(f, "Secret {secret} cannot take this CR's entries: {why}")
            }
            MergeRefused::OwnedWhole { secret, owner } => write!(
                f,
                "Secret {secret} is managed for ECRPullSecret {owner} (secretPolicy Own)"
            ),
        }
    }
}

impl std::error::Error for MergeRefused {}

fn claimed_first(r: &Rival, host: &str) -> String {
    format!(
        "ECRPullSecret {} asks for host {host} in this Secret too, and claims it first (it \
         is older)",
        r.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::decide::select::NamespaceView;
    use crate::reconcile::decide::shared::{MergedHost, Refusal};
    use crate::reconcile::decide::spec::Spec;
    use crate::reconcile::decide::validate::SpecPolicy;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-12-02 12:00 UTC);
    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const HOST2: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn spec(hosts: &[&str], extra: serde_json::Value) -> ValidSpec {
        let mut json = serde_json::json!({
            "secretName": "pull",
            "namespaces": ["a", "b"],
            "registries": hosts,
            "secretPolicy": "Merge",
        });
        if let (Some(o), Some(e)) = (json.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value::<Spec>(json)
            .unwrap()
            .validate(&SpecPolicy::default())
            .unwrap()
    }

    fn me() -> Owner {
        Owner {
            name: "me".into(),
            uid: "uid-me".into(),
        }
    }

    fn namespaces() -> Vec<Arc<NamespaceView>> {
        ["a", "b", "c"]
            .iter()
            .map(|n| {
                Arc::new(NamespaceView {
                    name: n.to_string(),
                    labels: Default::default(),
                    terminating: false,
                })
            })
            .collect()
    }

    fn host(h: &str, owner: &str, refresh_in: i64, intact: bool) -> MergedHost {
        MergedHost {
            host: h.into(),
            owner: owner.into(),
            owner_uid: format!("uid-{owner}").into(),
            refresh_at: Some(NOW + Duration::seconds(refresh_in)),
            expires_at: Some(NOW + Duration::hours(12)),
            intact,
        }
    }

    fn pull(ns: &str, hosts: Vec<MergedHost>, unrecorded: &[&str]) -> Arc<SharedSecret> {
        Arc::new(SharedSecret {
            namespace: ns.into(),
            name: "pull".into(),
            resource_version: "3".into(),
            shape: Shape::Pull {
                created_by: None,
                own_policy: false,
                hosts,
                unrecorded: unrecorded.iter().map(|h| Arc::from(*h)).collect(),
            },
        })
    }

    fn plan(spec: &ValidSpec, shared: &[Arc<SharedSecret>], rivals: &[Rival]) -> Plan {
        let namespaces = namespaces();
        let observed = ObservedCluster {
            namespaces: &namespaces,
            secrets: &[],
            service_accounts: &[],
        };
        let merge = MergeObserved {
            shared,
            rivals,
            created: "2026-12-01T00:00:00Z",
        };
        sync_merge(&me(), spec, &observed, &merge, NOW)
    }

    fn step<'a>(p: &'a Plan, ns: &str) -> &'a MergeStep {
        p.merges.iter().find(|m| m.namespace == ns).unwrap()
    }

    #[test]
    fn absent_is_created_fresh_is_left_and_due_is_written() {
        let s = spec(&[HOST], serde_json::json!({}));
        let p = plan(
            &s,
            &[pull("b", vec![host(HOST, "me", 600, true)], &[])],
            &[],
        );
        assert!(step(&p, "a").write && step(&p, "a").hosts == [HOST]);
        let fresh = step(&p, "b");
        assert!(!fresh.write && fresh.conflicts.is_empty());
        assert_eq!(
            fresh.in_place,
            Some((NOW + Duration::seconds(600), NOW + Duration::hours(12)))
        );
        assert!(p.needs_token());

        let due = plan(&s, &[pull("b", vec![host(HOST, "me", -1, true)], &[])], &[]);
        assert!(step(&due, "b").write);
        let edited = plan(
            &s,
            &[pull("b", vec![host(HOST, "me", 600, false)], &[])],
            &[],
        );
        assert!(step(&edited, "b").write && step(&edited, "b").in_place.is_none());
    }

    #[test]
    fn another_crs_host_or_an_unrecorded_entry_is_a_conflict_never_a_write() {
        let s = spec(&[HOST, HOST2], serde_json::json!({}));
        let shared = [
            pull("a", vec![host(HOST, "other", 600, true)], &[]),
            pull("b", vec![], &[HOST]),
        ];
        let p = plan(&s, &shared, &[]);
        let a = step(&p, "a");
        assert_eq!(a.hosts, [HOST2], "only the free host");
        assert!(a.conflicts[0].contains("ECRPullSecret other"));
        let b = step(&p, "b");
        assert_eq!(b.hosts, [HOST2]);
        assert!(b.conflicts[0].contains("did not write"));

        let adopting = spec(&[HOST, HOST2], serde_json::json!({"adoptExisting": true}));
        let p = plan(&adopting, &shared, &[]);
        assert_eq!(step(&p, "b").hosts, [HOST, HOST2]);
        assert_eq!(
            step(&p, "a").hosts,
            [HOST2],
            "adoption never takes a CR's host"
        );
    }

    #[test]
    fn of_two_crs_asking_for_a_free_host_the_older_claims_it_and_both_report() {
        let s = spec(&[HOST], serde_json::json!({}));
        let rival = |created: &str| Rival {
            name: "rival".into(),
            created: created.into(),
            targets: ["a".to_string()].into(),
            hosts: vec![HOST.into()],
        };
        let older = plan(&s, &[], &[rival("2026-11-01T00:00:00Z")]);
        let a = step(&older, "a");
        assert!(!a.write && a.hosts.is_empty() && a.conflicts[0].contains("claims it first"));
        assert!(step(&older, "b").write, "the rival does not target b");

        let younger = plan(&s, &[], &[rival("2026-12-02T00:00:00Z")]);
        assert!(step(&younger, "a").write && step(&younger, "a").conflicts.is_empty());
        // Once ours, a rival asking for it is reported here too, and we keep it fresh.
        let owned = plan(
            &s,
            &[pull("a", vec![host(HOST, "me", 600, true)], &[])],
            &[rival("2026-12-02T00:00:00Z")],
        );
        let a = step(&owned, "a");
        assert_eq!(a.hosts, [HOST]);
        assert!(a.conflicts[0].contains("also asks"));
    }

    #[test]
    fn refused_and_other_crs_own_secrets_are_conflicts_our_own_is_converted() {
        let s = spec(&[HOST], serde_json::json!({}));
        let refused = Arc::new(SharedSecret {
            namespace: "a".into(),
            name: "pull".into(),
            resource_version: "1".into(),
            shape: Shape::Refused(Refusal::WrongType("Opaque".into())),
        });
        let owned_by = |ns: &str, cr: &str| {
            Arc::new(SharedSecret {
                namespace: ns.into(),
                name: "pull".into(),
                resource_version: "1".into(),
                shape: Shape::Pull {
                    created_by: Some(cr.into()),
                    own_policy: true,
                    hosts: vec![],
                    unrecorded: vec![HOST.into()],
                },
            })
        };
        let p = plan(&s, &[refused, owned_by("b", "other")], &[]);
        assert!(p.merges.is_empty());
        assert_eq!(p.conflicts.len(), 2);
        assert!(p.conflicts[0].1.contains("Opaque"));
        assert!(p.conflicts[1].1.contains("secretPolicy Own"));
        let p = plan(&s, &[owned_by("b", "me")], &[]);
        assert!(step(&p, "b").write && step(&p, "b").hosts == [HOST]);
    }

    #[test]
    fn hosts_no_longer_wanted_or_targeted_are_taken_out_and_an_earlier_crs_are_not() {
        let s = spec(&[HOST], serde_json::json!({}));
        let mut orphan = host(HOST2, "me", 600, true);
        orphan.owner_uid = "uid-earlier".into();
        let shared = [
            pull(
                "a",
                vec![host(HOST, "me", 600, true), host(HOST2, "me", 600, true)],
                &[],
            ),
            pull("c", vec![host(HOST, "me", 600, true)], &[]),
            pull("b", vec![host(HOST, "me", 600, true), orphan], &[]),
        ];
        let p = plan(&s, &shared, &[]);
        let a = step(&p, "a");
        assert!(a.write && a.remove == [HOST2]);
        assert!(
            !step(&p, "b").write,
            "an earlier CR's host is never removed"
        );
        assert_eq!(p.unmerges.len(), 1);
        assert_eq!(
            (
                p.unmerges[0].namespace.as_str(),
                p.unmerges[0].hosts.as_slice()
            ),
            ("c", [HOST.to_string()].as_slice())
        );
    }
}
