//! Least privilege proven by use: the operator runs against the Kubernetes emulator with
//! RBAC ENFORCED from the shipped rbac.yaml, through a scenario that takes every code path
//! that touches the API. Then two directions are checked:
//! - enough: nothing was refused (no 403 anywhere in the request log);
//! - no more: every (verb, resource, scope[, resourceNames]) that rbac.yaml grants was
//!   exercised by some request, except the short documented allowlist below.
//!
//! The scenario: leader election (Lease create, renew, release), ECRPullSecret watch,
//! finalizer add and remove (deletionPolicy Delete), status and events, Secret create,
//! patch (a spec change) and delete, a foreign Secret (conflict) and an adoptable one (GET
//! then patch), a ServiceAccount patch that meets a conflict and re-reads (GET), the
//! global credentials Secret (AWS_CREDENTIALS_SECRET_NAME/NAMESPACE, a list+watch with a
//! fieldSelector) and a per-CR `aws.credentialsSecretRef`, and a `--once` run (its GET
//! of each CR).

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{
    apply_cr, init_logs, pull_secret_names, registry, start_once, start_operator, wait_for,
    wait_until, Options,
};
use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{
    EmulatorConfig, FaultConfig, K8sEmulator, PolicyRule, RbacPolicy, RequestRecord,
};
use serde_json::{json, Value};

const NS: &str = "ecr-creds-refresher";
const SA_USER: &str = "system:serviceaccount:ecr-creds-refresher:ecr-creds-refresher";
const WAIT: Duration = Duration::from_secs(20);

/// Grants the scenario does not exercise, each with the reason it is still shipped.
/// Entries are (verb, resource[/subresource], namespace of the Role or "" for cluster).
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[];

fn shipped_rbac() -> RbacPolicy {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml")).unwrap();
    let mut policy = RbacPolicy {
        user: SA_USER.into(),
        rules: Vec::new(),
    };
    policy.add_role_yaml(&yaml, None).unwrap();
    assert!(!policy.rules.is_empty());
    policy
}

fn aws_secret_data(key_id: &str) -> Value {
    json!({
        "AWS_ACCESS_KEY_ID": B64.encode(key_id),
        "AWS_SECRET_ACCESS_KEY": B64.encode("rbac-test-secret-key"),
    })
}

fn secret(k8s: &K8sEmulator, ns: &str, name: &str, type_: &str, data: Value) {
    k8s.apply(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": ns}, "type": type_, "data": data}),
    )
    .unwrap();
}

fn pull_secrets(k8s: &K8sEmulator, ns: &str) -> Vec<String> {
    k8s.get("serviceaccounts", Some(ns), "default")
        .map(|sa| pull_secret_names(&sa))
        .unwrap_or_default()
}

/// The operator as the scenario runs it: leader election in its namespace, AWS keys
/// from the global credentials Secret only.
fn options() -> Options {
    Options {
        leader_election_namespace: Some(NS.into()),
        args: vec!["--aws-credentials-source".into(), "secret".into()],
        env: [
            ("POD_NAMESPACE", NS),
            ("AWS_CREDENTIALS_SECRET_NAME", "aws-credentials"),
            ("AWS_CREDENTIALS_SECRET_NAMESPACE", NS),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
        ..Options::default()
    }
}

/// Whether `rule` authorizes `r` for `verb` on `resource` (the request's own verb and
/// resource must be these).
fn rule_covers(rule: &PolicyRule, verb: &str, resource: &str, r: &RequestRecord) -> bool {
    let r_resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    r.verb == verb
        && r_resource == resource
        && rule.api_groups.contains(&r.group)
        && rule
            .namespace
            .as_ref()
            .is_none_or(|ns| r.namespace.as_ref() == Some(ns))
        && (rule.resource_names.is_empty()
            || r.name
                .as_ref()
                .is_some_and(|n| rule.resource_names.contains(n)))
}

/// Runs the whole scenario under enforcement; returns the request log.
async fn scenario() -> Vec<RequestRecord> {
    init_logs();
    let k8s = K8sEmulator::start(EmulatorConfig {
        namespaces: [
            "default",
            NS,
            "app-1",
            "app-2",
            "conflict-ns",
            "adopt-ns",
            "team-creds",
            "team-a",
        ]
        .map(String::from)
        .to_vec(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    k8s.set_rbac(Some(shipped_rbac()));
    let aws = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .unwrap();
    for key_id in ["AKIDGLOBAL", "AKIDTEAM"] {
        aws.add_key(key_id, "rbac-test-secret-key");
    }

    // Credentials: the global Secret and a team's own.
    secret(
        &k8s,
        NS,
        "aws-credentials",
        "Opaque",
        aws_secret_data("AKIDGLOBAL"),
    );
    secret(
        &k8s,
        "team-creds",
        "aws-team",
        "Opaque",
        aws_secret_data("AKIDTEAM"),
    );
    // Outside the operator's namespace: the Secret grants its use to the CR.
    let mut granted = k8s.get("secrets", Some("team-creds"), "aws-team").unwrap();
    granted["metadata"]["annotations"] = json!({"ecr.creds.dev/allowed-ecrpullsecrets": "team"});
    k8s.apply("secrets", granted).unwrap();
    // A foreign Secret in the way (conflict) and an adoptable one (only ECR auths).
    secret(
        &k8s,
        "conflict-ns",
        "ecr-pull",
        "Opaque",
        json!({"password": B64.encode("not ours")}),
    );
    let old = json!({"auths": {registry("us-east-1"): {"auth": B64.encode("AWS:old")}}});
    secret(
        &k8s,
        "adopt-ns",
        "ecr-pull",
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": B64.encode(old.to_string())}),
    );
    let main_spec = |registries: Vec<String>| {
        json!({"secretName": "ecr-pull",
               "namespaces": ["app-*", "conflict-ns", "adopt-ns"],
               "registries": registries,
               "adoptExisting": true,
               "deletionPolicy": "Delete"})
    };
    apply_cr(&k8s, "main", main_spec(vec![registry("us-east-1")]));
    apply_cr(
        &k8s,
        "team",
        json!({"secretName": "team-pull", "namespaces": ["team-a"],
               "registries": [registry("us-east-1")],
               "aws": {"credentialsSecretRef": {"name": "aws-team", "namespace": "team-creds"}}}),
    );
    // The first ServiceAccount patch loses a race: the operator must re-read (GET).
    k8s.faults().set(FaultConfig {
        error_code: Some(409),
        every_nth: Some(1),
        verbs: vec!["patch".into()],
        resources: vec!["serviceaccounts".into()],
        max_errors: Some(1),
        ..FaultConfig::default()
    });

    let running = start_operator(&k8s, &aws, &options()).await;

    wait_until("Secret app-1/ecr-pull", WAIT, || {
        k8s.get("secrets", Some("app-1"), "ecr-pull").is_some()
    })
    .await;
    wait_until("SA app-2/default lists ecr-pull", WAIT, || {
        pull_secrets(&k8s, "app-2").contains(&"ecr-pull".to_string())
    })
    .await;
    wait_until("adopted Secret adopt-ns/ecr-pull", WAIT, || {
        k8s.get("secrets", Some("adopt-ns"), "ecr-pull")
            .is_some_and(|s| {
                s["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ecr-creds-refresher"
            })
    })
    .await;
    let team_secret = tokio::time::timeout(
        WAIT,
        k8s.wait_for("secrets", Some("team-a"), "team-pull", WAIT, |s| {
            s.is_some()
        }),
    )
    .await;
    assert!(
        matches!(team_secret, Ok(Ok(_))),
        "no team Secret; team status: {}",
        k8s.get("ecrpullsecrets", None, "team").unwrap()["status"]
    );
    wait_until("an event in default", WAIT, || {
        !k8s.list("events", Some("default")).is_empty()
    })
    .await;
    let main = wait_for("main reports its conflict in status", WAIT, || {
        k8s.get("ecrpullsecrets", None, "main")
            .filter(|c| c["status"]["conditions"].is_array())
            .ok_or_else(|| "no conditions yet".to_string())
    })
    .await;
    assert!(main["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
    assert_eq!(
        k8s.get("secrets", Some("conflict-ns"), "ecr-pull").unwrap()["type"],
        "Opaque",
        "the foreign Secret was left alone"
    );

    // A spec change rewrites the Secrets (patch).
    apply_cr(
        &k8s,
        "main",
        main_spec(vec![registry("us-east-1"), registry("us-west-2")]),
    );
    wait_until("Secret app-1 holds both registries", WAIT, || {
        k8s.get("secrets", Some("app-1"), "ecr-pull")
            .is_some_and(|s| {
                s["metadata"]["annotations"]["ecr.creds.dev/registries"]
                    .as_str()
                    .is_some_and(|r| r.contains("us-west-2"))
            })
    })
    .await;

    // Deletion with deletionPolicy Delete: Secrets and SA entries go, then the finalizer.
    k8s.delete("ecrpullsecrets", None, "main").unwrap();
    wait_until("main gone", WAIT, || {
        k8s.get("ecrpullsecrets", None, "main").is_none()
    })
    .await;
    assert!(k8s.get("secrets", Some("app-1"), "ecr-pull").is_none());
    assert!(!pull_secrets(&k8s, "app-1").contains(&"ecr-pull".to_string()));

    // Shutdown releases the Lease (an update); a renewal happened before if the run was
    // longer than the retry period.
    running
        .shutdown(Duration::from_secs(5), std::future::pending())
        .await;
    assert_eq!(
        k8s.get("leases", Some(NS), "ecr-creds-refresher").unwrap()["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or(""),
        ""
    );

    // A one-shot run (a CronJob with the same RBAC) reads each CR back.
    let once = start_once(&k8s, &aws, &options()).await;
    let (total, failed) = once.run_once(WAIT).await.unwrap();
    assert_eq!((total, failed), (1, 0));

    let log = k8s.requests();
    k8s.shutdown().await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_is_exactly_what_the_operator_uses() {
    let log = scenario().await;

    // Enough: nothing refused.
    let refused: Vec<_> = log.iter().filter(|r| r.code == 403).collect();
    assert!(refused.is_empty(), "refused under rbac.yaml: {refused:#?}");

    // What was used, for the record.
    let mut used: Vec<String> = log
        .iter()
        .filter(|r| !r.verb.is_empty())
        .map(|r| {
            let res = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            format!(
                "{} {}{} in {}",
                r.verb,
                if r.group.is_empty() {
                    String::new()
                } else {
                    format!("{}/", r.group)
                },
                res,
                r.namespace.as_deref().unwrap_or("<cluster>")
            )
        })
        .collect();
    used.sort();
    used.dedup();
    println!("used:\n  {}", used.join("\n  "));

    // No more: every granted (verb, resource) of every rule authorized some request.
    let mut unused = Vec::new();
    for rule in shipped_rbac().rules {
        let scope = rule.namespace.clone().unwrap_or_default();
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let exercised = log
                    .iter()
                    .any(|r| r.code != 403 && rule_covers(&rule, verb, resource, r));
                let allowed = NOT_EXERCISED
                    .iter()
                    .any(|(v, res, ns, _why)| v == verb && res == resource && *ns == scope);
                if !exercised && !allowed {
                    unused.push(format!(
                        "{verb} {resource} (scope {:?}, resourceNames {:?})",
                        if scope.is_empty() { "cluster" } else { &scope },
                        rule.resource_names
                    ));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "rbac.yaml grants what the operator never used:\n  {}",
        unused.join("\n  ")
    );
}
