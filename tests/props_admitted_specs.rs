//! Any spec the CRD schema admits, through everything the operator does with it:
//! validation, planning and a reconcile against the emulators. Whatever the values (the
//! longest patterns, the worst globs, the extreme durations the patterns allow), the
//! operator does not panic, each reconcile ends within a bounded time, and it makes at
//! most one ECR call per token group: never a storm.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use ecr_creds_refresher::app::Running;
use ecr_creds_refresher::reconcile::plan::{self, ObservedCluster};
use ecr_creds_refresher::reconcile::select::NamespaceView;
use ecr_creds_refresher::reconcile::spec::{Spec, SpecPolicy};
use ecr_creds_refresher::reconcile::vocab::Owner;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Longer than any reconcile may take: a liveness bound, not a speed target.
const RECONCILE_BOUND: Duration = Duration::from_secs(10);

/// Namespaces of the cluster the specs select from.
fn cluster_namespaces() -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let mut out = Vec::new();
    for i in 0..40 {
        let name = match i % 4 {
            0 => format!("team-{i}"),
            1 => format!("{}{i}", "a".repeat(50)),
            2 => format!("prod-{i}-x"),
            _ => format!("n{i}"),
        };
        let labels = match i % 3 {
            0 => vec![("env", "prod")],
            1 => vec![("env", "dev"), ("team", "a")],
            _ => vec![],
        };
        out.push((name, labels));
    }
    out
}

/// A value the CRD's namespace pattern admits: names, globs, and the worst shapes.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?",
        2 => "[a-z0-9*?]([-a-z0-9]{0,20}[a-z0-9*?])?",
        1 => "[a-z0-9*?]([-a-z0-9*?]{0,20}[a-z0-9*?])?",
        1 => Just("*".to_string()),
        1 => Just(format!("*{}b", "a".repeat(61))),
        1 => Just(format!("{}*", "a".repeat(62))),
        // At the wildcard bound, and one past it.
        1 => Just("*?*?*?*?".to_string()),
        1 => Just("*?*?*?*?*".to_string()),
        1 => Just("team-*".to_string()),
    ]
}

/// A duration the CRD's pattern admits, from 0s to the largest it can spell.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..100).prop_map(|h| format!("{h}h")),
        (0u32..1000).prop_map(|m| format!("{m}m")),
        (0u32..100_000).prop_map(|s| format!("{s}s")),
        (0u32..100, 0u32..1000, 0u32..100_000).prop_map(|(h, m, s)| format!("{h}h{m}m{s}s")),
        Just("99h999m99999s".to_string()),
        Just("0s".to_string()),
    ]
}

fn registry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")),
        Just(format!("{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com")),
        Just("210987654321.dkr.ecr.us-east-1.amazonaws.com".to_string()),
        Just("public.ecr.aws".to_string()),
        Just(format!(
            "https://{ACCOUNT}.dkr.ecr-fips.us-east-2.amazonaws.com/"
        )),
    ]
}

fn unique(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// A spec the schema admits (lists deduplicated, as `x-kubernetes-list-type: set` wants).
fn admitted_spec() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?",
        (
            prop::collection::vec(pattern(), 0..6),
            prop::sample::select(vec!["n3", "team-0", "prod-2-x", "team-*", "*-x"]),
        )
            .prop_map(|(mut v, known)| {
                // At least one pattern that selects a namespace, so most cases write.
                v.push(known.to_string());
                unique(v)
            }),
        prop::collection::vec(pattern(), 0..10).prop_map(unique),
        prop::option::of(prop_oneof![
            Just(json!({})),
            Just(json!({"matchLabels": {"env": "prod"}})),
            Just(json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]},
                                             {"key": "skip", "operator": "DoesNotExist"}]})),
            Just(json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]})),
        ]),
        prop::option::of(
            prop::collection::vec(
                prop_oneof![Just("*".to_string()), "[a-z]([-a-z0-9]{0,10}[a-z0-9])?"],
                1..6
            )
            .prop_map(unique)
        ),
        prop::collection::vec(registry(), 0..4).prop_map(unique),
        (
            prop::option::weighted(0.3, duration()),
            prop::option::weighted(0.3, duration()),
        ),
        prop::option::of(prop::sample::select(vec!["Retain", "Delete"])),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            json!({"roleArn": format!("arn:aws:iam::{ACCOUNT}:role/ecr-pull"), "externalId": "x1"}),
            json!({"credentialsSecretRef": {"name": "keys", "namespace": OPERATOR_NAMESPACE}}),
            json!({"credentialsSecretRef": {"name": "elsewhere", "namespace": "team-0"}}),
        ])),
    )
        .prop_map(
            |(name, namespaces, exclude, selector, sas, registries, (before, min), policy, adopt, aws)| {
                let mut spec = json!({"secretName": name, "namespaces": namespaces,
                    "excludeNamespaces": exclude, "registries": registries,
                    "adoptExisting": adopt, "region": "us-east-1"});
                if let Some(sel) = selector {
                    spec["namespaceSelector"] = sel;
                }
                if let Some(sas) = sas {
                    spec["serviceAccounts"] = json!(sas);
                }
                let mut refresh = json!({});
                if let Some(b) = before {
                    refresh["beforeExpiry"] = json!(b);
                }
                if let Some(m) = min {
                    refresh["minInterval"] = json!(m);
                }
                spec["refresh"] = refresh;
                if let Some(p) = policy {
                    spec["deletionPolicy"] = json!(p);
                }
                if let Some(a) = aws {
                    spec["aws"] = a;
                }
                spec
            },
        )
}

/// One operator (in `--once` mode: no controller, reconciles are driven here) over the
/// emulators, shared by every case.
struct World {
    runtime: tokio::runtime::Runtime,
    env: Env,
    operator: Running,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (env, operator) = runtime.block_on(async {
            let env = Env::emulators(Options {
                // The operator as deployed: its default floor.
                min_refresh_interval: None,
                ..Options::default()
            })
            .await;
            for (name, labels) in cluster_namespaces() {
                env.namespace(&name, &labels).await;
            }
            env.namespace(OPERATOR_NAMESPACE, &[]).await;
            let operator = env.start_once().await;
            tokio::time::timeout(WAIT, operator.caches.synced())
                .await
                .expect("caches sync");
            (env, operator)
        });
        World {
            runtime,
            env,
            operator,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_admitted_spec_is_served_or_refused_without_panic_storm_or_stall(
        spec in admitted_spec(),
        case in 0u64..u64::MAX,
    ) {
        let w = world();
        let name = format!("p{case:x}");
        let cr = json!({"apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret",
                        "metadata": {"name": name}, "spec": spec});
        // Only what the schema admits is the question here.
        let admitted = w.env.k8s.apply("ecrpullsecrets", cr);
        prop_assume!(admitted.is_ok());

        // Validation and planning, pure.
        let parsed: Spec = serde_json::from_value(spec.clone()).expect("the schema's shape parses");
        let valid = parsed.validate(&SpecPolicy::default());
        if let Ok(valid) = &valid {
            let namespaces: Vec<std::sync::Arc<NamespaceView>> = cluster_namespaces()
                .into_iter()
                .map(|(n, _)| NamespaceView { name: n, labels: Default::default(), terminating: false }.into())
                .collect();
            let owner = Owner { name: name.clone(), uid: "u".into() };
            let observed = ObservedCluster { namespaces: &namespaces, secrets: &[], service_accounts: &[] };
            let p = plan::sync(&owner, valid, &observed, time::OffsetDateTime::now_utc());
            prop_assert!(p.targets.len() <= namespaces.len());
        }

        // Two reconciles against the emulators: bounded in time, and in ECR calls.
        let groups = {
            let mut regions: Vec<&str> = spec["registries"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            regions.iter_mut().for_each(|r| {
                *r = if r.contains("public.ecr.aws") { "public" } else if r.contains("eu-west-1") { "eu-west-1" } else if r.contains("us-east-2") { "us-east-2" } else { "us-east-1" };
            });
            regions.sort_unstable();
            regions.dedup();
            regions.len().max(1) as u64
        };
        let reconciler = &w.operator.reconciler;
        let result = w.runtime.block_on(async {
            wait_until("the CR in the operator's cache", WAIT, || {
                w.operator.caches.crs.keys().iter().any(|k| *k.name == *name)
            })
            .await;
            let before = w.env.aws.calls();
            let first = tokio::time::timeout(RECONCILE_BOUND, reconciler.reconcile(&name)).await;
            let second = tokio::time::timeout(RECONCILE_BOUND, reconciler.reconcile(&name)).await;
            let after = w.env.aws.calls();
            let _ = w.env.k8s.delete("ecrpullsecrets", None, &name);
            (first.is_ok() && second.is_ok(), after.ecr + after.ecr_public - before.ecr - before.ecr_public)
        });
        prop_assert!(result.0, "a reconcile of {} took longer than {RECONCILE_BOUND:?}", spec);
        // A token per group at most, shared by both reconciles (the second finds it cached
        // or is held to the floor); an invalid spec makes none.
        prop_assert!(result.1 <= groups, "{} ECR calls for {groups} groups: {}", result.1, spec);
        if valid.is_err() {
            prop_assert_eq!(result.1, 0, "an invalid spec called ECR: {}", spec);
        }
    }
}
