//! Hardening II (issue 16), the findings about grants and shared state: one test each,
//! named after the finding it pins. Each fails on 5cb7cbd and passes now.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use emulators::registry::Registry;
use serde_json::{json, Value};

use common::*;

const GRANT: &str = "ecr.creds.dev/allowed-ecrpullsecrets";
/// The password every token of the fake ECR carries, so the real registry accepts it.
const PASSWORD: &str = "issued-by-the-fake-ecr";

fn ready_reason(cr: &Value) -> (String, String) {
    let c = ready_condition(cr).cloned().unwrap_or(Value::Null);
    (
        c["reason"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// The CR's Ready condition once it has `reason` at the CR's generation; the CR.
async fn wait_reason(env: &Env, name: &str, reason: &str) -> Value {
    wait_for(format!("{name} with reason {reason}"), WAIT, || {
        let cr = env.get_cr(name).ok_or("CR absent")?;
        let current = cr["status"]["observedGeneration"] == cr["metadata"]["generation"];
        if current && ready_reason(&cr).0 == reason {
            Ok(cr)
        } else {
            Err(format!("status: {}", cr["status"]))
        }
    })
    .await
}

fn condition<'a>(cr: &'a Value, type_: &str) -> Option<&'a Value> {
    cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// A credentials Secret in `ns` whose grant annotation names `granted` (none: no grant).
fn credentials_secret(env: &Env, ns: &str, name: &str, granted: Option<&str>) {
    let data = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID", format!("AKIA{}", name.to_uppercase())),
        ("AWS_SECRET_ACCESS_KEY", format!("{name}-secret-key")),
    ]);
    env.foreign_secret(ns, name, "Opaque", data);
    set_grant(env, ns, name, granted);
}

/// Sets (or with `None` removes) the grant annotation of Secret `ns/name`.
fn set_grant(env: &Env, ns: &str, name: &str, granted: Option<&str>) {
    let mut secret = env.k8s.get("secrets", Some(ns), name).expect("the Secret");
    secret["metadata"]["annotations"] = match granted {
        Some(crs) => json!({GRANT: crs}),
        None => json!({}),
    };
    env.k8s.apply("secrets", secret).expect("valid Secret");
}

fn uses_keys(ns: &str, name: &str) -> Value {
    json!({"credentialsSecretRef": {"name": name, "namespace": ns}})
}

/// How many `/v2/` requests the registry logged.
fn registry_checks(registry: &Registry) -> usize {
    registry.log().matches("GET /v2/").count()
}

/// N1: an ungranted CR whose plan needed no write took the shared token cache without
/// the grant check, and learned from its status which registries accept another team's
/// principal. Now it gets no token, no check and no `status.registries`, and the
/// registry sees no request after it is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_ungranted_cr_gets_no_registry_check() {
    let registry_peer = Registry::start(PASSWORD).expect("docker-registry starts");
    let mut env = Env::emulators(Options {
        verify_registries: true,
        token_password: Some(PASSWORD.into()),
        env: vec![
            (
                "ECR_REGISTRY_ENDPOINT_URL".into(),
                registry_peer.url.clone(),
            ),
            (
                "AWS_CA_BUNDLE".into(),
                registry_peer.ca_file.to_string_lossy().into_owned(),
            ),
        ],
        ..Options::default()
    })
    .await;
    for ns in ["apps", "team-x"] {
        env.namespace(ns, &[]).await;
    }
    credentials_secret(&env, "team-x", "keys", Some("a"));
    env.start_operator().await;
    env.cr(
        "a",
        json!({"secretName": "pull-a", "namespaces": ["apps"],
               "registries": [registry(REGION)], "aws": uses_keys("team-x", "keys")}),
    );
    let a = wait_for("a verified", WAIT, || {
        let cr = env.get_cr("a").ok_or("absent")?;
        match condition(&cr, "RegistryVerified") {
            Some(c) if c["status"] == "True" => Ok(cr),
            _ => Err(format!("status: {}", cr["status"])),
        }
    })
    .await;
    assert_eq!(a["status"]["registries"].as_array().map(Vec::len), Some(1));
    let before = registry_checks(&registry_peer);
    assert!(before >= 1, "{}", registry_peer.log());

    // b names team-x's keys without a grant, targets a namespace that does not exist
    // (so its plan writes nothing) and a host of its choosing.
    let other_account = format!("210987654321.dkr.ecr.{REGION}.amazonaws.com");
    env.cr(
        "b",
        json!({"secretName": "pull-b", "namespaces": ["does-not-exist"],
               "registries": [registry(REGION), other_account],
               "aws": uses_keys("team-x", "keys")}),
    );
    wait_for("b reconciled", WAIT, || {
        let cr = env.get_cr("b").ok_or("absent")?;
        match cr["status"]["observedGeneration"] == cr["metadata"]["generation"] {
            true => Ok(()),
            false => Err(format!("status: {}", cr["status"])),
        }
    })
    .await;
    // Reconciled again (a namespace event, a requeue): still nothing.
    env.namespace("apps", &[("touched", "yes")]).await;
    env.settle(Duration::from_millis(500)).await;
    let b = env.get_cr("b").expect("b");
    assert_eq!(
        registry_checks(&registry_peer),
        before,
        "the registry was asked for b: {}",
        registry_peer.log()
    );
    let hosts = b["status"]["registries"].as_array().map_or(0, Vec::len);
    assert_eq!(hosts, 0, "b learned registry answers: {}", b["status"]);
    assert!(
        condition(&b, "RegistryVerified").is_none_or(|c| c["status"] != "True"),
        "{}",
        b["status"]
    );
    assert_eq!(
        ready_reason(&b).0,
        "CredentialsNotPermitted",
        "{}",
        b["status"]
    );
    env.shutdown().await;
}

/// N1, second half: revoking a grant took effect only at the next refresh (up to 6 h).
/// The credentials Secret is watched, its change requeues the CRs naming it, and the
/// grant is checked on every use of a token, cached or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_revoked_grant_turns_the_cr_not_permitted_within_one_reconcile() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["apps", "team-x"] {
        env.namespace(ns, &[]).await;
    }
    credentials_secret(&env, "team-x", "keys", Some("a"));
    env.start_operator().await;
    env.cr(
        "a",
        json!({"secretName": "pull-a", "namespaces": ["apps"], "aws": uses_keys("team-x", "keys")}),
    );
    env.wait_ready("a").await;
    let fetched = env.aws.calls().ecr;
    set_grant(&env, "team-x", "keys", Some("someone-else"));
    let cr = wait_reason(&env, "a", "CredentialsNotPermitted").await;
    assert!(ready_reason(&cr).1.contains(GRANT), "{}", cr["status"]);
    assert_eq!(
        env.aws.calls().ecr,
        fetched,
        "no token fetched after the revocation"
    );
    // Granted again: used again.
    set_grant(&env, "team-x", "keys", Some("a"));
    env.wait_ready("a").await;
    env.shutdown().await;
}

/// N6: any CR author could use any role the operator may assume (`--allowed-role-arns`
/// defaults to `*`, and `externalId` is readable in every CR). A role is now usable only
/// by the CRs a cluster admin grants it to, in a ConfigMap of the operator's namespace;
/// with default settings, CR b naming CR a's role is refused with a reason, and nothing
/// is fetched (no STS call, no ECR call). A grant applies without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n6_a_role_is_usable_only_by_the_crs_granted_it() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["apps", OPERATOR_NAMESPACE] {
        env.namespace(ns, &[]).await;
    }
    let role = format!("arn:aws:iam::{ACCOUNT}:role/team-a-pull");
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("a", &role)]);
    env.start_operator().await;
    let with_role = |secret: &str| {
        json!({"secretName": secret, "namespaces": ["apps"],
               "aws": {"roleArn": role, "externalId": "team-a-external-id"}})
    };
    env.cr("a", with_role("pull-a"));
    env.wait_ready("a").await;
    assert!(env.aws.calls().sts_assume_role >= 1);
    let before = env.aws.calls();

    env.cr("b", with_role("pull-b"));
    let b = wait_reason(&env, "b", "RoleNotPermitted").await;
    let message = ready_reason(&b).1;
    assert!(message.contains(ROLE_GRANTS), "says where: {message}");
    assert!(env.secret("apps", "pull-b").is_none(), "b got a Secret");
    let after = env.aws.calls();
    assert_eq!(
        after.sts_assume_role, before.sts_assume_role,
        "STS asked for b"
    );
    assert_eq!(after.ecr, before.ecr, "ECR asked for b");

    // The admin grants it: applied without a restart. Then revoked: refused again.
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("a", &role), ("b", &role)]);
    env.wait_ready("b").await;
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &[("b", &role)]);
    wait_reason(&env, "a", "RoleNotPermitted").await;
    env.shutdown().await;
}
