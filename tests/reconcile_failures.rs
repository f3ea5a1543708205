//! End to end, what goes wrong: foreign Secrets (conflict or adoption), other writers on
//! the same ServiceAccount, AWS failing or throttling, and input the CRD schema lets
//! through but the operator cannot serve. Every failure shows in the CR's status, touches
//! nothing it should not, and heals when its cause goes away.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use emulators::aws::Fault;
use emulators::k8s::FaultConfig;
use serde_json::{json, Value};

use common::*;

/// Recovery waits through the reconcile failure backoff (2 s doubling) and the token
/// cache's failure memory (5 s).
const RECOVERY: Duration = Duration::from_secs(30);

async fn wait_condition_within(
    env: &Env,
    name: &str,
    status: &str,
    reason: &str,
    within: Duration,
) -> Value {
    wait_for(format!("CR {name} Ready={status} {reason}"), within, || {
        let cr = env.get_cr(name).ok_or("CR absent")?;
        match ready_condition(&cr) {
            Some(c) if c["status"] == status && c["reason"] == reason => Ok(cr),
            _ => Err(format!("status: {}", cr["status"])),
        }
    })
    .await
}

/// Waits for Ready=False with `reason` and a message containing `part`; the message.
async fn wait_message(env: &Env, name: &str, reason: &str, part: &str) -> String {
    wait_for(format!("CR {name} {reason} saying {part:?}"), WAIT, || {
        let cr = env.get_cr(name).ok_or("CR absent")?;
        let c = ready_condition(&cr).ok_or("no condition")?;
        let message = c["message"].as_str().unwrap_or("");
        if c["status"] == "False" && c["reason"] == reason && message.contains(part) {
            Ok(message.to_string())
        } else {
            Err(format!("status: {}", cr["status"]))
        }
    })
    .await
}

fn failures(cr: &Value) -> Vec<(String, String)> {
    cr["status"]["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["namespace"].as_str().unwrap_or("").to_string(),
                        f["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn dockerconfig(auths: Value) -> BTreeMap<&'static str, String> {
    BTreeMap::from([(DOCKERCONFIG_KEY, json!({ "auths": auths }).to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_secret_of_that_name_is_left_untouched_and_reported() {
    let env = Env::start().await;
    env.namespace("conf", &[]).await;
    env.namespace("fine", &[]).await;
    env.foreign_secret(
        "conf",
        "ecr-pull",
        "Opaque",
        BTreeMap::from([("token", "someone else's".to_string())]),
    );
    let foreign = env.secret("conf", "ecr-pull").unwrap();

    env.cr(
        "cr",
        json!({"secretName": "ecr-pull", "namespaces": ["conf", "fine"]}),
    );
    let cr = env.wait_condition("cr", "False", "SecretConflict").await;
    assert_eq!(failures(&cr), [("conf".into(), "SecretConflict".into())]);
    assert_eq!(cr["status"]["syncedNamespaces"], 1);
    let message = ready_condition(&cr).unwrap()["message"].as_str().unwrap();
    assert!(message.contains("conf"), "{message}");

    env.wait_secret("fine", "ecr-pull").await;
    env.settle(Duration::from_millis(300)).await;
    assert_eq!(
        env.secret("conf", "ecr-pull").unwrap(),
        foreign,
        "byte-for-byte"
    );
    assert!(
        env.pull_secrets("conf", "default").is_empty(),
        "the SA is never pointed at a foreign Secret"
    );
    assert_eq!(env.pull_secrets("fine", "default"), ["ecr-pull"]);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_existing_takes_over_ecr_only_secrets_but_not_mixed_ones() {
    let env = Env::start().await;
    let old_auth = B64.encode("AWS:old-password");
    let reference_host = format!("https://{}", registry(REGION));
    env.namespace("adopt", &[]).await;
    env.namespace("mixed", &[]).await;
    // The reference operator's shape: https:// key, only ECR.
    env.foreign_secret(
        "adopt",
        "ecr-pull",
        DOCKERCONFIG_TYPE,
        dockerconfig(json!({ reference_host.clone(): {"auth": old_auth} })),
    );
    // ECR and Docker Hub: someone's hand-made Secret, never adopted.
    env.foreign_secret(
        "mixed",
        "ecr-pull",
        DOCKERCONFIG_TYPE,
        dockerconfig(json!({
            reference_host.clone(): {"auth": old_auth},
            "docker.io": {"auth": B64.encode("me:hub-password")},
        })),
    );
    let mixed = env.secret("mixed", "ecr-pull").unwrap();

    env.cr(
        "cr",
        json!({"secretName": "ecr-pull", "namespaces": ["adopt", "mixed"], "adoptExisting": true}),
    );
    let cr = env.wait_condition("cr", "False", "SecretConflict").await;
    assert_eq!(failures(&cr), [("mixed".into(), "SecretConflict".into())]);

    let adopted = wait_for("adopted Secret labelled", WAIT, || {
        let s = env.secret("adopt", "ecr-pull").unwrap();
        if s["metadata"]["labels"][MANAGED_BY.0] == MANAGED_BY.1 {
            Ok(s)
        } else {
            Err(s["metadata"].to_string())
        }
    })
    .await;
    assert_eq!(adopted["metadata"]["annotations"][OWNER_ANNOTATION], "cr");
    let auths = docker_config(&adopted)["auths"].clone();
    let keys: Vec<&String> = auths.as_object().unwrap().keys().collect();
    assert_eq!(keys, [&registry(REGION)], "content replaced, bare host");
    assert_ne!(auths[registry(REGION)]["auth"], old_auth.as_str());
    wait_until("adopted Secret attached", WAIT, || {
        env.pull_secrets("adopt", "default") == ["ecr-pull"]
    })
    .await;

    env.settle(Duration::from_millis(300)).await;
    assert_eq!(env.secret("mixed", "ecr-pull").unwrap(), mixed, "untouched");
    assert!(env.pull_secrets("mixed", "default").is_empty());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_service_account_writers_lose_no_entry() {
    let env = Env::start().await;
    env.namespace("race", &[]).await;
    // Slow ServiceAccount writes widen every race window.
    env.k8s.faults().set(FaultConfig {
        latency_ms: 15,
        verbs: vec!["patch".into(), "update".into()],
        resources: vec!["serviceaccounts".into()],
        ..Default::default()
    });

    let addr = env.k8s.addr();
    const FOREIGN: usize = 12;
    let writer = tokio::spawn(async move {
        let path = "/api/v1/namespaces/race/serviceaccounts/default";
        let mut conflicts = 0;
        for i in 0..FOREIGN {
            loop {
                let (code, mut sa) = http(addr, "GET", path, None).await;
                assert_eq!(code, 200);
                let mut list = sa["imagePullSecrets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                list.push(json!({"name": format!("foreign-{i}")}));
                sa["imagePullSecrets"] = Value::Array(list);
                let (code, body) = http(addr, "PUT", path, Some(("application/json", &sa))).await;
                match code {
                    200 => break,
                    409 => conflicts += 1,
                    _ => panic!("PUT: {code} {body}"),
                }
            }
        }
        conflicts
    });
    const OURS: usize = 6;
    for i in 0..OURS {
        env.cr(
            &format!("cr-{i}"),
            json!({"secretName": format!("pull-{i}"), "namespaces": ["race"]}),
        );
    }
    let conflicts = writer.await.unwrap();
    for i in 0..OURS {
        env.wait_ready(&format!("cr-{i}")).await;
    }
    let want: BTreeSet<String> = (0..OURS)
        .map(|i| format!("pull-{i}"))
        .chain((0..FOREIGN).map(|i| format!("foreign-{i}")))
        .collect();
    wait_for("every entry of both writers", WAIT, || {
        let names = env.pull_secrets("race", "default");
        let set: BTreeSet<String> = names.iter().cloned().collect();
        if set == want && names.len() == want.len() {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    let sa = env.sa("race", "default").unwrap();
    let owned: BTreeSet<&str> = sa["metadata"]["annotations"][SA_OWNED_ANNOTATION]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    let ours: BTreeSet<String> = (0..OURS).map(|i| format!("pull-{i}")).collect();
    assert_eq!(
        owned,
        ours.iter().map(String::as_str).collect(),
        "only our entries are claimed"
    );
    // The race was real: someone lost at least once and re-read.
    let operator_lost = env
        .requests_where(|r| r.resource == "serviceaccounts" && r.verb == "patch")
        .iter()
        .any(|r| r.code == 409 || r.code == 422);
    assert!(
        conflicts > 0 || operator_lost,
        "no write ever conflicted: the test raced nothing"
    );
    env.shutdown().await;
}

/// Short-lived tokens, so a refresh (which needs ECR) comes due within seconds.
fn short_tokens() -> Options {
    Options {
        token_lifetime: Duration::from_secs(4),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_failure_leaves_secrets_untouched_and_recovers() {
    let mut env = Env::emulators(short_tokens()).await;
    env.namespace("aws-a", &[]).await;
    env.cr(
        "flaky",
        json!({"secretName": "ecr-pull", "namespaces": ["aws-a"], "refresh": {"minInterval": "1s"}}),
    );
    env.start_operator().await;
    env.wait_ready("flaky").await;
    let before = env.wait_secret("aws-a", "ecr-pull").await;

    env.aws.set_fault(Fault::ServerError, None);
    let cr = wait_condition_within(&env, "flaky", "False", "AwsError", WAIT).await;
    let message = ready_condition(&cr).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("InternalFailure") || message.contains("500"),
        "the reason is given: {message}"
    );
    assert_eq!(
        env.secret("aws-a", "ecr-pull").unwrap(),
        before,
        "the Secret in place is kept byte-for-byte"
    );
    wait_until("a Warning event with the reason", WAIT, || {
        env.events_for("flaky")
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "AwsError")
    })
    .await;

    env.aws.clear_fault();
    wait_condition_within(&env, "flaky", "True", "TokenFetched", RECOVERY).await;
    let after = env.secret("aws-a", "ecr-pull").unwrap();
    assert_ne!(after["data"], before["data"], "refreshed with a new token");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_with_a_bounded_number_of_calls() {
    let mut env = Env::emulators(short_tokens()).await;
    env.namespace("thr", &[]).await;
    // Three CRs share one token group: throttling must not multiply by CR.
    for i in 0..3 {
        env.cr(
            &format!("thr-{i}"),
            json!({"secretName": format!("pull-{i}"), "namespaces": ["thr"],
                   "refresh": {"minInterval": "1s"}}),
        );
    }
    env.start_operator().await;
    for i in 0..3 {
        env.wait_ready(&format!("thr-{i}")).await;
    }
    let before = env.aws.calls().ecr;
    env.aws.set_fault(Fault::Throttle, None);
    let window = Instant::now();
    for i in 0..3 {
        wait_condition_within(&env, &format!("thr-{i}"), "False", "Throttled", WAIT).await;
    }
    // Hold the fault for a fixed window and count.
    let rest = Duration::from_secs(6).saturating_sub(window.elapsed());
    tokio::time::sleep(rest).await;
    let calls = env.aws.calls().ecr - before;
    // One refresh: 3 attempts; the failure memory (5 s) and the reconcile backoff allow
    // at most one more round in 6 s. Without them: 3 CRs x retries x requeues.
    assert!(
        (1..=9).contains(&calls),
        "{calls} ECR calls in {:?} of throttling",
        window.elapsed()
    );

    env.aws.clear_fault();
    for i in 0..3 {
        wait_condition_within(&env, &format!("thr-{i}"), "True", "TokenFetched", RECOVERY).await;
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_reported_and_other_crs_keep_being_served() {
    let env = Env::start().await;
    env.namespace("valid", &[]).await;
    // The CRD refuses an empty duration; "0s" passes it but not the operator's floor.
    env.cr(
        "bad-interval",
        json!({"secretName": "a", "namespaces": ["valid"], "refresh": {"minInterval": "0s"}}),
    );
    env.cr(
        "bad-selector",
        json!({"secretName": "b",
               "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}),
    );
    // The CRD's pattern lets `dkr-ecr` pass with `amazonaws.com`; no such host exists.
    env.cr(
        "bad-registry",
        json!({"secretName": "d", "namespaces": ["valid"],
               "registries": [format!("{ACCOUNT}.dkr-ecr.us-east-1.amazonaws.com")]}),
    );
    env.cr("good", json!({"secretName": "c", "namespaces": ["valid"]}));

    let cr = env
        .wait_condition("bad-interval", "False", "InvalidSpec")
        .await;
    let message = ready_condition(&cr).unwrap()["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("spec.refresh.minInterval"),
        "{message}"
    );
    let cr = env
        .wait_condition("bad-selector", "False", "InvalidSpec")
        .await;
    let message = ready_condition(&cr).unwrap()["message"].clone();
    assert!(
        message.as_str().unwrap().contains("namespaceSelector"),
        "{message}"
    );
    let cr = env
        .wait_condition("bad-registry", "False", "InvalidSpec")
        .await;
    let message = ready_condition(&cr).unwrap()["message"].clone();
    assert!(
        message.as_str().unwrap().contains("spec.registries"),
        "{message}"
    );
    env.wait_ready("good").await;
    for secret in ["a", "b", "d"] {
        assert!(env.secret("valid", secret).is_none(), "{secret}");
    }

    // Still alive and serving: a new namespace for the good CR, and a fixed bad one.
    env.cr(
        "good",
        json!({"secretName": "c", "namespaces": ["valid", "later"]}),
    );
    env.namespace("later", &[]).await;
    env.wait_secret("later", "c").await;
    env.patch_cr(
        "bad-interval",
        json!({"spec": {"refresh": {"minInterval": "1m"}}}),
    )
    .await;
    env.wait_ready("bad-interval").await;
    env.wait_secret("valid", "a").await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_region_anywhere_is_an_invalid_spec() {
    let mut env = Env::emulators(Options {
        region: None,
        ..Options::default()
    })
    .await;
    env.namespace("nr", &[]).await;
    env.cr(
        "no-region",
        json!({"secretName": "a", "namespaces": ["nr"]}),
    );
    env.cr(
        "with-region",
        json!({"secretName": "b", "namespaces": ["nr"], "region": "eu-central-1"}),
    );
    env.cr(
        "with-registry",
        json!({"secretName": "c", "namespaces": ["nr"], "registries": [registry("eu-west-2")]}),
    );
    env.start_operator().await;
    let cr = env
        .wait_condition("no-region", "False", "InvalidSpec")
        .await;
    let message = ready_condition(&cr).unwrap()["message"].clone();
    assert!(message.as_str().unwrap().contains("region"), "{message}");
    env.wait_ready("with-region").await;
    env.wait_ready("with-registry").await;
    let hosts: Vec<String> = docker_config(&env.secret("nr", "c").unwrap())["auths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(hosts, [registry("eu-west-2")]);
    assert!(env.secret("nr", "a").is_none());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_namespace_is_reported_then_served_when_created() {
    let env = Env::start().await;
    env.namespace("here", &[]).await;
    env.cr(
        "cr",
        json!({"secretName": "ecr-pull", "namespaces": ["here", "not-yet"]}),
    );
    let cr = env.wait_condition("cr", "False", "NamespaceErrors").await;
    assert_eq!(
        failures(&cr),
        [("not-yet".into(), "NamespaceNotFound".into())]
    );
    assert_eq!(cr["status"]["targetNamespaces"], 2);
    assert_eq!(cr["status"]["syncedNamespaces"], 1);
    env.wait_secret("here", "ecr-pull").await;

    env.namespace("not-yet", &[]).await;
    env.wait_secret("not-yet", "ecr-pull").await;
    let cr = env.wait_ready("cr").await;
    assert_eq!(cr["status"]["syncedNamespaces"], 2);
    assert!(failures(&cr).is_empty());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_secret_missing_or_malformed_is_reported_then_followed() {
    let env = Env::start().await;
    env.namespace("creds", &[]).await;
    env.namespace("ops", &[]).await;
    let cr_with = |secret: &str| {
        json!({"secretName": format!("pull-{secret}"), "namespaces": ["creds"],
               "aws": {"credentialsSecretRef": {"name": secret, "namespace": "ops"}}})
    };
    env.cr("absent", cr_with("absent-keys"));
    env.foreign_secret(
        "ops",
        "bad-keys",
        "Opaque",
        BTreeMap::from([("AWS_ACCESS_KEY_ID", "AKIASHOULDNOTLEAK".to_string())]),
    );
    env.cr("malformed", cr_with("bad-keys"));

    // Once the operator has read (or missed) the Secret, the message says what is wrong.
    let message = wait_message(
        &env,
        "absent",
        "CredentialsMissing",
        "ops/absent-keys not found",
    )
    .await;
    assert!(message.contains("ops/absent-keys"), "{message}");
    let message = wait_message(
        &env,
        "malformed",
        "CredentialsMissing",
        "AWS_SECRET_ACCESS_KEY",
    )
    .await;
    assert!(
        !message.contains("AKIASHOULDNOTLEAK"),
        "value echoed: {message}"
    );
    let events = serde_json::to_string(&env.events_for("malformed")).unwrap();
    assert!(!events.contains("AKIASHOULDNOTLEAK"), "value in an event");
    assert!(env.secret("creds", "pull-absent-keys").is_none());

    // The operator watches those Secrets: creating or fixing one heals the CR.
    let keys = || {
        BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", "AKIACRTEST".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "cr-test-secret".to_string()),
        ])
    };
    env.foreign_secret("ops", "absent-keys", "Opaque", keys());
    env.foreign_secret("ops", "bad-keys", "Opaque", keys());
    wait_condition_within(&env, "absent", "True", "TokenFetched", RECOVERY).await;
    wait_condition_within(&env, "malformed", "True", "TokenFetched", RECOVERY).await;
    env.wait_secret("creds", "pull-absent-keys").await;
    // Signed with the CR's own keys.
    let auth = env.aws.last_headers("ecr").unwrap()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(auth.contains("Credential=AKIACRTEST/"), "{auth}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crs_claiming_one_secret_name_do_not_fight_over_it() {
    let env = Env::start().await;
    env.namespace("shared", &[]).await;
    env.cr(
        "first",
        json!({"secretName": "same", "namespaces": ["shared"]}),
    );
    env.cr(
        "second",
        json!({"secretName": "same", "namespaces": ["shared"]}),
    );
    // Exactly one wins, the other reports the conflict; the winner keeps it.
    let (winner, loser) = wait_for("one Ready, one SecretConflict", WAIT, || {
        let r = |n: &str| {
            env.ready(n)
                .map(|c| c["reason"].as_str().unwrap_or("").to_string())
        };
        match (r("first").as_deref(), r("second").as_deref()) {
            (Some("TokenFetched"), Some("SecretConflict")) => Ok(("first", "second")),
            (Some("SecretConflict"), Some("TokenFetched")) => Ok(("second", "first")),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    env.settle(Duration::from_millis(300)).await;
    let secret = env.secret("shared", "same").unwrap();
    assert_eq!(secret["metadata"]["annotations"][OWNER_ANNOTATION], winner);
    assert_eq!(env.pull_secrets("shared", "default"), ["same"]);
    let cr = env.get_cr(loser).unwrap();
    assert_eq!(failures(&cr), [("shared".into(), "SecretConflict".into())]);
    // Settled: nobody rewrites the Secret back and forth.
    env.k8s.clear_requests();
    env.settle(Duration::from_millis(500)).await;
    assert!(
        env.writes_of("secrets").is_empty(),
        "{:?}",
        env.writes_of("secrets")
    );
    assert_eq!(env.secret("shared", "same").unwrap(), secret);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_credentials_secret_gives_no_spurious_failure_on_create_or_restart() {
    let mut env = Env::emulators(Options::default()).await;
    env.namespace("ops", &[]).await;
    env.namespace("team", &[]).await;
    env.foreign_secret(
        "ops",
        "team-keys",
        "Opaque",
        BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", "AKIATEAMKEY".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "team-secret".to_string()),
        ]),
    );
    env.start_operator().await;
    env.cr(
        "team",
        json!({"secretName": "team-pull", "namespaces": ["team"],
               "aws": {"credentialsSecretRef": {"name": "team-keys", "namespace": "ops"}}}),
    );
    env.wait_ready("team").await;
    env.settle(Duration::from_millis(300)).await;
    let warnings = |env: &Env| -> Vec<Value> {
        env.events_for("team")
            .into_iter()
            .filter(|e| e["type"] == "Warning")
            .collect()
    };
    assert!(warnings(&env).is_empty(), "{:?}", warnings(&env));

    env.stop_operator().await;
    env.k8s.clear_requests();
    env.start_operator().await;
    wait_until("caches synced", WAIT, || env.operator().is_synced()).await;
    env.settle(Duration::from_millis(500)).await;
    let writes = env.requests_where(is_write);
    assert!(writes.is_empty(), "restart wrote: {writes:?}");
    assert!(warnings(&env).is_empty(), "{:?}", warnings(&env));
    env.shutdown().await;
}
