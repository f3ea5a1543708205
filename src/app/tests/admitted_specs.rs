//! Any spec the CRD schema admits, through everything the operator does with it:
//! validation, planning and a reconcile against the emulators. Whatever the values (the
//! longest patterns, the worst globs, the extreme durations the patterns allow), the
//! operator does not panic, each reconcile ends within a bounded time, and it makes at
//! most one ECR call per token group: never a storm. A spec that validates is served:
//! both reconciles succeed, every namespace it selects (by name, glob and label) holds
//! its Secret, and it reports Ready.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use emulators::wait::{wait_until, WAIT};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::app::{start, Running};
use crate::aws::env::AwsEnv;
use crate::reconcile::decide::plan::{self, ObservedCluster};
use crate::reconcile::decide::select::NamespaceView;
use crate::reconcile::decide::spec::Spec;
use crate::reconcile::decide::validate::SpecPolicy;
use crate::reconcile::vocab::{Owner, GRANT_ANNOTATION, OWNER_ANNOTATION, ROLE_GRANTS_CONFIGMAP};

/// The fake AWS account of the emulators' registries.
const ACCOUNT: &str = "123456789012";
/// The operator's own namespace (POD_NAMESPACE).
const OPERATOR_NAMESPACE: &str = "ops";

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
    k8s: K8sEmulator,
    aws: AwsEmulator,
    operator: Running,
}

/// Namespace `name` with `labels`, as the cluster admin creates it.
fn namespace(k8s: &K8sEmulator, name: &str, labels: &[(&str, &str)]) {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    k8s.apply(
        "namespaces",
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .unwrap();
}

/// An Opaque credentials Secret with the emulated account's keys; `grant` annotates it
/// for those CRs.
fn credentials_secret(k8s: &K8sEmulator, ns: &str, name: &str, grant: Option<&str>) {
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let mut annotations = serde_json::Map::new();
    if let Some(grant) = grant {
        annotations.insert(GRANT_ANNOTATION.into(), json!(grant));
    }
    k8s.apply(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": name, "namespace": ns, "annotations": annotations},
               "data": {"AWS_ACCESS_KEY_ID": b64(ACCESS_KEY_ID),
                        "AWS_SECRET_ACCESS_KEY": b64(SECRET_ACCESS_KEY)}}),
    )
    .unwrap();
}

/// The operator as the binary starts it with `--once`, over these emulators: the
/// deployed floor (no `--min-refresh-interval`), static keys for the emulated AWS.
async fn start_once(k8s: &K8sEmulator, aws: &AwsEmulator) -> Running {
    let args = [
        "--api-server".to_string(),
        k8s.url(),
        "--health-probe-bind-address".into(),
        "127.0.0.1:0".into(),
        "--metrics-bind-address".into(),
        "0".into(),
        "--verify-registries=false".into(),
        "--once".into(),
    ];
    let vars = |k: &str| match k {
        "AWS_REGION" => Some(emulators::aws::REGION.to_string()),
        "POD_NAME" => Some("ecr-creds-refresher-test".to_string()),
        "POD_NAMESPACE" => Some(OPERATOR_NAMESPACE.to_string()),
        _ => None,
    };
    let cfg = crate::config::Config::parse(args, vars).unwrap();
    let aws_url = aws.url();
    let aws_env = AwsEnv::from_pairs(&[
        ("AWS_ENDPOINT_URL", &aws_url),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_REGION", emulators::aws::REGION),
    ]);
    start(&cfg, aws_env).await.unwrap()
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (k8s, aws, operator) = runtime.block_on(async {
            let k8s = K8sEmulator::start(EmulatorConfig::default()).await.unwrap();
            let aws = AwsEmulator::start(AwsEmulatorConfig::default())
                .await
                .unwrap();
            for (name, labels) in cluster_namespaces() {
                namespace(&k8s, &name, &labels);
            }
            namespace(&k8s, OPERATOR_NAMESPACE, &[]);
            // The credentials Secrets the generated specs name: one in the operator's
            // namespace, one elsewhere that grants its use to every CR.
            credentials_secret(&k8s, OPERATOR_NAMESPACE, "keys", None);
            credentials_secret(&k8s, "team-0", "elsewhere", Some("*"));
            let operator = start_once(&k8s, &aws).await;
            tokio::time::timeout(WAIT, operator.caches.synced())
                .await
                .expect("caches sync");
            (k8s, aws, operator)
        });
        World {
            runtime,
            k8s,
            aws,
            operator,
        }
    })
}

fn ready_condition(cr: &Value) -> Option<&Value> {
    cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// How a case went, counted so that the test shows it served specs, not only refused them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Valid, with namespaces selected: all of them served, Ready True.
    Served,
    /// Valid, namespaces selected and served, but some it lists by name do not exist:
    /// Ready False, NamespaceErrors.
    ServedButSomeMissing,
    /// Valid, selecting no namespace.
    NothingSelected,
    Refused,
}

/// The cluster's namespaces as the planner sees them, labels included.
fn namespace_views(w: &World) -> Vec<Arc<NamespaceView>> {
    w.k8s
        .list("namespaces", None)
        .into_iter()
        .map(|ns| {
            let labels = ns["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str().unwrap_or(""))))
                        .collect()
                })
                .unwrap_or_default();
            let name = ns["metadata"]["name"].as_str().unwrap().to_string();
            Arc::new(NamespaceView {
                name,
                labels,
                terminating: false,
            })
        })
        .collect()
}

/// ECR token groups a spec needs: one per region of its registries (at least one).
fn token_groups(spec: &Value) -> u64 {
    let mut regions: Vec<&str> = spec["registries"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    regions.iter_mut().for_each(|r| {
        *r = if r.contains("public.ecr.aws") {
            "public"
        } else if r.contains("eu-west-1") {
            "eu-west-1"
        } else if r.contains("us-east-2") {
            "us-east-2"
        } else {
            "us-east-1"
        };
    });
    regions.sort_unstable();
    regions.dedup();
    regions.len().max(1) as u64
}

/// One admitted spec through validation, planning and two reconciles.
fn check_case(mut spec: Value) -> Result<Verdict, TestCaseError> {
    // A name of its own for every run, shrinking included: a CR of an earlier run may
    // still be finalizing (deletionPolicy Delete) under the same name.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let case = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let w = world();
    let name = format!("p{case}");
    // A Secret name of its own: an earlier case's Secret (kept: deletionPolicy Retain)
    // would otherwise be a conflict, not a spec this one cannot serve.
    spec["secretName"] = json!(format!("{}-{case:x}", spec["secretName"].as_str().unwrap()));
    let secret_name = spec["secretName"].as_str().unwrap().to_string();
    let cr = json!({"apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret",
                    "metadata": {"name": name}, "spec": spec});
    // Only what the schema admits is the question here.
    // A role a spec names is granted to its CR, as a cluster admin would: an ungranted
    // role is refused by design (tests/hardening_grants.rs), not a spec this one serves.
    let role = spec["aws"]["roleArn"].as_str().map(str::to_owned);
    if let Some(role) = &role {
        let mut grants = w
            .k8s
            .get(
                "configmaps",
                Some(OPERATOR_NAMESPACE),
                ROLE_GRANTS_CONFIGMAP,
            )
            .and_then(|c| c["data"].as_object().cloned())
            .unwrap_or_default();
        grants.insert(name.clone(), json!(role));
        w.k8s
            .apply(
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "data": grants,
                       "metadata": {"name": ROLE_GRANTS_CONFIGMAP, "namespace": OPERATOR_NAMESPACE}}),
            )
            .unwrap();
    }
    let admitted = w.k8s.apply("ecrpullsecrets", cr);
    prop_assume!(admitted.is_ok());

    // Validation and planning, pure, over the cluster's namespaces and their labels.
    let parsed: Spec = serde_json::from_value(spec.clone()).expect("the schema's shape parses");
    let valid = parsed.validate(&SpecPolicy::default());
    let (mut targets, mut missing) = (Vec::new(), Vec::new());
    if let Ok(valid) = &valid {
        let namespaces = namespace_views(w);
        let owner = Owner {
            name: name.clone(),
            uid: "u".into(),
        };
        let observed = ObservedCluster {
            namespaces: &namespaces,
            secrets: &[],
            service_accounts: &[],
        };
        let p = plan::sync(&owner, valid, &observed, time::OffsetDateTime::now_utc());
        prop_assert!(p.targets.len() <= namespaces.len());
        (targets, missing) = (p.targets, p.missing);
    }

    // Two reconciles against the emulators: bounded in time, and in ECR calls.
    let groups = token_groups(&spec);
    let reconciler = &w.operator.reconciler;
    let (first, second, calls) = w.runtime.block_on(async {
        wait_until("the CR in the operator's cache", WAIT, || {
            w.operator
                .caches
                .crs
                .keys()
                .iter()
                .any(|k| *k.name == *name)
        })
        .await;
        if let Some(role) = &role {
            let grants = &w.operator.caches.role_grants;
            let seen = tokio::time::timeout(WAIT, async {
                while !grants.granted(&name, role).await {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(seen.is_ok(), "the operator never saw {name}'s role grant");
        }
        let before = w.aws.calls();
        let first = tokio::time::timeout(RECONCILE_BOUND, reconciler.reconcile(&name)).await;
        let second = tokio::time::timeout(RECONCILE_BOUND, reconciler.reconcile(&name)).await;
        let after = w.aws.calls();
        let shown = |r: Result<Result<_, _>, _>| {
            r.map(|inner| inner.map(|_| ()).map_err(|e| format!("{e}")))
        };
        (
            shown(first),
            shown(second),
            after.ecr + after.ecr_public - before.ecr - before.ecr_public,
        )
    });
    let result = (|| {
        prop_assert!(
            first.is_ok() && second.is_ok(),
            "a reconcile of {} took longer than {RECONCILE_BOUND:?}",
            spec
        );
        // A token per group at most, shared by both reconciles (the second finds it cached
        // or is held to the floor); an invalid spec makes none.
        prop_assert!(
            calls <= groups,
            "{} ECR calls for {groups} groups: {}",
            calls,
            spec
        );
        if valid.is_err() {
            prop_assert_eq!(calls, 0, "an invalid spec called ECR: {}", spec);
            return Ok(Verdict::Refused);
        }
        // Valid: served, every selected namespace, and Ready says so.
        let (first, second) = (first.unwrap(), second.unwrap());
        prop_assert!(
            first.is_ok() && second.is_ok(),
            "a valid spec's reconcile failed ({first:?}, {second:?}): {}",
            spec
        );
        if targets.is_empty() {
            return Ok(Verdict::NothingSelected);
        }
        for ns in &targets {
            let secret = w.k8s.get("secrets", Some(ns), &secret_name);
            prop_assert!(
                secret
                    .as_ref()
                    .is_some_and(|s| s["metadata"]["annotations"][OWNER_ANNOTATION] == *name),
                "{ns} is selected but holds no Secret {secret_name} of {name}: {}",
                spec
            );
        }
        // Ready unless a namespace it lists by name does not exist (that is reported).
        let cr = w
            .k8s
            .get("ecrpullsecrets", None, &name)
            .expect("the CR is there");
        let status = &cr["status"];
        prop_assert_eq!(
            status["syncedNamespaces"].as_u64(),
            Some(targets.len() as u64),
            "{} for {}",
            status,
            spec
        );
        prop_assert_eq!(
            status["failedNamespaces"].as_u64(),
            Some(missing.len() as u64),
            "{} for {}",
            status,
            spec
        );
        if missing.is_empty() {
            let ready = ready_condition(&cr).is_some_and(|c| c["status"] == "True")
                && cr["status"]["observedGeneration"] == cr["metadata"]["generation"];
            prop_assert!(ready, "served but not Ready: {} for {}", status, spec);
            Ok(Verdict::Served)
        } else {
            let ready = ready_condition(&cr);
            prop_assert!(
                ready.is_some_and(|c| c["status"] == "False" && c["reason"] == "NamespaceErrors"),
                "{:?} missing, yet {} for {}",
                missing,
                status,
                spec
            );
            Ok(Verdict::ServedButSomeMissing)
        }
    })();
    let _ = w.k8s.delete("ecrpullsecrets", None, &name);
    result
}

#[test]
fn every_admitted_spec_is_served_or_refused_without_panic_storm_or_stall() {
    let seen = Mutex::new(BTreeMap::<Verdict, u32>::new());
    // Half the cases are specs that validate: the worst patterns and durations make most
    // admitted specs invalid, and the valid ones are where "served" is checked.
    let validates = |spec: &Value| {
        serde_json::from_value::<Spec>(spec.clone())
            .is_ok_and(|s| s.validate(&SpecPolicy::default()).is_ok())
    };
    let specs = prop_oneof![
        admitted_spec(),
        admitted_spec().prop_filter("a spec that validates", validates),
    ];
    TestRunner::new(Config::with_cases(96))
        .run(&specs, |spec| {
            let verdict = check_case(spec)?;
            *seen.lock().unwrap().entry(verdict).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    println!("admitted specs: {seen:?}");
    // Each valid spec has a pattern that names an existing namespace, so most select
    // some: the "served" checks above ran on many of them (expected about 45 of 96).
    let count = |v: Verdict| seen.get(&v).copied().unwrap_or(0);
    assert!(
        count(Verdict::Served) >= 5
            && count(Verdict::Served) + count(Verdict::ServedButSomeMissing) >= 25,
        "too few specs served to mean anything: {seen:?}"
    );
}
