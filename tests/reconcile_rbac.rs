//! End to end under the shipped least-privilege RBAC (rbac.yaml, enforced by the
//! emulator): every request of a full life cycle (leader election, the credentials
//! Secret, sync, adoption check, events, status, finalizer, cleanup) is allowed.

mod common;

use std::collections::BTreeMap;

use emulators::k8s::RbacPolicy;
use serde_json::json;

use common::*;

const OPERATOR_NS: &str = "ecr-creds-refresher";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_life_cycle_needs_nothing_beyond_the_shipped_rbac() {
    let mut env = Env::emulators(Options {
        leader_election_namespace: Some(OPERATOR_NS.into()),
        env: vec![
            ("POD_NAMESPACE".into(), OPERATOR_NS.into()),
            (
                "AWS_CREDENTIALS_SECRET_NAME".into(),
                "aws-credentials".into(),
            ),
        ],
        ..Options::default()
    })
    .await;
    env.namespace(OPERATOR_NS, &[]).await;
    env.foreign_secret(
        OPERATOR_NS,
        "aws-credentials",
        "Opaque",
        BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", "AKIARBACTEST".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "rbac-test-secret".to_string()),
        ]),
    );
    for ns in ["rb-1", "rb-2", "rb-3"] {
        env.namespace(ns, &[]).await;
    }
    env.foreign_secret(
        "rb-3",
        "ecr-pull",
        "Opaque",
        BTreeMap::from([("x", "y".to_string())]),
    );
    let mut policy = RbacPolicy {
        user: format!("system:serviceaccount:{OPERATOR_NS}:ecr-creds-refresher"),
        rules: Vec::new(),
    };
    let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml"))
        .expect("rbac.yaml");
    policy.add_role_yaml(&rbac, None).expect("rbac.yaml parses");
    env.k8s.set_rbac(Some(policy));

    env.cr(
        "rbac",
        json!({"secretName": "ecr-pull", "namespaces": ["rb-*"], "deletionPolicy": "Delete",
               "serviceAccounts": ["*"]}),
    );
    env.start_operator().await;
    env.wait_condition("rbac", "False", "SecretConflict").await;
    for ns in ["rb-1", "rb-2"] {
        env.wait_secret(ns, "ecr-pull").await;
        wait_until(format!("{ns} SA patched"), WAIT, || {
            env.pull_secrets(ns, "default") == ["ecr-pull"]
        })
        .await;
    }
    wait_until("an event recorded", WAIT, || {
        !env.events_for("rbac").is_empty()
    })
    .await;
    let auth = env.aws.last_headers("ecr").unwrap()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(auth.contains("Credential=AKIARBACTEST/"), "{auth}");

    env.k8s.delete("ecrpullsecrets", None, "rbac").unwrap();
    wait_until("the CR is cleaned up and gone", WAIT, || {
        env.get_cr("rbac").is_none()
    })
    .await;
    assert!(env.secret("rb-1", "ecr-pull").is_none());
    assert!(
        env.secret("rb-3", "ecr-pull").is_some(),
        "the foreign one stays"
    );

    let forbidden = env.requests_where(|r| r.code == 403);
    assert!(forbidden.is_empty(), "denied by rbac.yaml: {forbidden:?}");
    // It really ran under the policy: leader election and status went through it.
    assert!(!env
        .requests_where(|r| r.resource == "leases" && r.code < 300)
        .is_empty());
    env.shutdown().await;
}
