//! `secretPolicy: Merge`, end to end: the CR's registry entries in a pull secret shared
//! with other writers; everything else byte for byte; conflicts reported, never written
//! over; only the operator's hosts removed; and an owner editing the Secret while the
//! operator refreshes never loses an edit. Every write here passes the admission policy
//! the emulator enforces (deploy/admission-policy.yaml).

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use common::*;
use emulators::k8s::FaultConfig;

const SHARED: &str = "shared-pull";
const MERGED_HOSTS: &str = "ecr.creds.dev/merged-hosts";
/// Docker Hub and GHCR entries as someone else wrote them: spacing, key order and an
/// extra field that a re-serialisation would change.
const FOREIGN: &str = r#"{ "auths": { "https://index.docker.io/v1/": {"auth": "ZG9ja2VyOmh1Yg==", "email": "ops@example.com"}, "ghcr.io":{"username":"bot","password":"gh","auth":"Ym90OmdoCg=="} }, "credsStore": "desktop" }"#;
/// Their entries' bytes, as the shared Secret must keep them (keys are re-quoted).
const DOCKER_HUB: &str =
    r#""https://index.docker.io/v1/":{"auth": "ZG9ja2VyOmh1Yg==", "email": "ops@example.com"}"#;
const GHCR: &str = r#""ghcr.io":{"username":"bot","password":"gh","auth":"Ym90OmdoCg=="}"#;

/// The platform team's shared pull secret, with a label, an annotation and a second key.
fn shared_secret(env: &Env, ns: &str, config: &str) {
    env.k8s
        .apply(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": SHARED, "namespace": ns,
                                "labels": {"team": "platform"},
                                "annotations": {"owner": "platform-team"}},
                   "type": DOCKERCONFIG_TYPE,
                   "data": {DOCKERCONFIG_KEY: B64.encode(config), "note": B64.encode("keep me")}}),
        )
        .expect("valid Secret");
}

fn merge_cr(env: &Env, name: &str, namespaces: Value, extra: Value) {
    let mut spec = json!({
        "secretName": SHARED,
        "namespaces": namespaces,
        "registries": [registry(REGION)],
        "secretPolicy": "Merge",
        "refresh": {"minInterval": "1s"},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    env.cr(name, spec);
}

/// The `.dockerconfigjson` as text, exactly as stored.
fn config_text(secret: &Value) -> String {
    let data = secret["data"][DOCKERCONFIG_KEY]
        .as_str()
        .unwrap_or_default();
    String::from_utf8(B64.decode(data).unwrap_or_default()).unwrap_or_default()
}

fn records(secret: &Value) -> Value {
    secret["metadata"]["annotations"][MERGED_HOSTS]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

fn condition_message(cr: &Value) -> String {
    ready_condition(cr)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Our entry holds a token the AWS emulator issued.
fn holds_issued_token(env: &Env, secret: &Value) -> bool {
    let auth = docker_config(secret)["auths"][registry(REGION)]["auth"]
        .as_str()
        .map(str::to_string);
    auth.is_some_and(|a| env.aws.issued_ecr_tokens().contains_key(&a))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_keeps_everything_else_byte_for_byte_refreshes_only_ours_and_creates_where_absent() {
    let mut env = Env::emulators(Options {
        token_lifetime: Duration::from_secs(4),
        ..Options::default()
    })
    .await;
    env.namespace("shared", &[]).await;
    env.namespace("fresh", &[]).await;
    shared_secret(&env, "shared", FOREIGN);
    env.start_operator().await;
    merge_cr(&env, "ecr", json!(["shared", "fresh"]), json!({}));
    env.wait_ready("ecr").await;

    let host = registry(REGION);
    let secret = env.secret("shared", SHARED).unwrap();
    let text = config_text(&secret);
    assert!(
        text.contains(DOCKER_HUB),
        "Docker Hub entry kept byte for byte: {text}"
    );
    assert!(text.contains(GHCR), "GHCR entry kept byte for byte: {text}");
    assert!(
        text.contains(r#""credsStore": "desktop""#) || text.contains(r#""credsStore":"desktop""#)
    );
    assert!(holds_issued_token(&env, &secret), "our entry: {text}");
    assert_eq!(secret["data"]["note"], B64.encode("keep me"));
    assert_eq!(
        secret["metadata"]["labels"],
        json!({"team": "platform"}),
        "no label added"
    );
    let annotations = secret["metadata"]["annotations"].as_object().unwrap();
    assert_eq!(annotations["owner"], "platform-team");
    assert_eq!(
        annotations.len(),
        2,
        "only the record annotation is added: {annotations:?}"
    );
    assert_eq!(records(&secret)[&host]["owner"], "ecr");

    // Absent: created as the operator's own, labelled, holding only our entry.
    let created = env.secret("fresh", SHARED).expect("created where absent");
    assert_eq!(created["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
    assert_eq!(records(&created)[&host]["owner"], "ecr");
    assert_eq!(secret_auths(&created).len(), 1);

    // ServiceAccounts point at the shared Secret.
    for ns in ["shared", "fresh"] {
        wait_until(format!("default SA in {ns}"), WAIT, || {
            env.pull_secrets(ns, "default") == [SHARED]
        })
        .await;
    }

    // A refresh (tokens live 4 s) rewrites our entry only.
    let first = config_text(&secret);
    let refreshed = wait_for("our entry refreshed", WAIT, || {
        let s = env.secret("shared", SHARED).unwrap();
        if config_text(&s) != first {
            Ok(s)
        } else {
            Err("same token".into())
        }
    })
    .await;
    let text = config_text(&refreshed);
    assert!(text.contains(DOCKER_HUB) && text.contains(GHCR), "{text}");
    assert!(holds_issued_token(&env, &refreshed));
    assert_eq!(refreshed["data"]["note"], B64.encode("keep me"));
    assert!(
        env.k8s.admission_denials().is_empty(),
        "every write passed the admission policy: {:?}",
        env.k8s.admission_denials()
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crs_asking_for_one_host_conflict_in_both_statuses_and_neither_overwrites() {
    let mut env = Env::emulators(Options::default()).await;
    env.namespace("shared", &[]).await;
    shared_secret(&env, "shared", FOREIGN);
    env.start_operator().await;
    merge_cr(&env, "first", json!(["shared"]), json!({}));
    env.wait_ready("first").await;
    let before = env.secret("shared", SHARED).unwrap();

    merge_cr(&env, "second", json!(["shared"]), json!({}));
    let second = env
        .wait_condition("second", "False", "SecretConflict")
        .await;
    assert!(
        condition_message(&second).contains("ECRPullSecret first"),
        "{}",
        condition_message(&second)
    );
    let first = env.wait_condition("first", "False", "SecretConflict").await;
    assert!(
        condition_message(&first).contains("ECRPullSecret second"),
        "{}",
        condition_message(&first)
    );
    env.settle(Duration::from_millis(500)).await;
    let after = env.secret("shared", SHARED).unwrap();
    assert_eq!(records(&after)[registry(REGION)]["owner"], "first");
    assert_eq!(
        config_text(&after),
        config_text(&before),
        "nobody overwrote the entry"
    );

    // The second goes: the first is Ready again.
    env.k8s.delete("ecrpullsecrets", None, "second").unwrap();
    env.wait_ready("first").await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_and_unrecorded_entries_are_conflicts_left_untouched_unless_adopted() {
    let mut env = Env::emulators(Options::default()).await;
    env.namespace("opaque", &[]).await;
    env.namespace("handmade", &[]).await;
    env.foreign_secret(
        "opaque",
        SHARED,
        "Opaque",
        [("token", "not a pull secret".to_string())].into(),
    );
    let handmade = format!(
        r#"{{"auths":{{"https://{}":{{"auth":"aGFuZDptYWRl"}},"ghcr.io":{{"auth":"eDp5"}}}}}}"#,
        registry(REGION)
    );
    shared_secret(&env, "handmade", &handmade);
    env.start_operator().await;
    merge_cr(&env, "ecr", json!(["opaque", "handmade"]), json!({}));
    let cr = env.wait_condition("ecr", "False", "SecretConflict").await;
    let failures = cr["status"]["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let message = |ns: &str| {
        failures
            .iter()
            .find(|f| f["namespace"] == ns)
            .and_then(|f| f["message"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(message("opaque").contains("Opaque"), "{failures:?}");
    assert!(
        message("handmade").contains("did not write"),
        "{failures:?}"
    );
    env.settle(Duration::from_millis(300)).await;
    let opaque = env.secret("opaque", SHARED).unwrap();
    assert_eq!(opaque["type"], "Opaque", "never converted");
    assert_eq!(opaque["data"]["token"], B64.encode("not a pull secret"));
    assert_eq!(
        config_text(&env.secret("handmade", SHARED).unwrap()),
        handmade
    );

    // Opting in takes the hand-made entry over; the GHCR one stays.
    env.patch_cr(
        "ecr",
        json!({"spec": {"adoptExisting": true, "namespaces": ["handmade"]}}),
    )
    .await;
    env.wait_ready("ecr").await;
    let taken = env.secret("handmade", SHARED).unwrap();
    assert!(holds_issued_token(&env, &taken));
    let text = config_text(&taken);
    assert!(
        !text.contains("aGFuZDptYWRl") && text.contains(r#""ghcr.io":{"auth":"eDp5"}"#),
        "{text}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_namespaces_and_deletion_remove_only_our_hosts_and_only_secrets_we_created() {
    let mut env = Env::emulators(Options::default()).await;
    env.namespace("shared", &[("pull", "ecr")]).await;
    env.namespace("fresh", &[("pull", "ecr")]).await;
    shared_secret(&env, "shared", FOREIGN);
    env.service_account("shared", "default", &[SHARED]);
    env.start_operator().await;
    env.cr(
        "ecr",
        json!({"secretName": SHARED, "namespaceSelector": {"matchLabels": {"pull": "ecr"}},
               "registries": [registry(REGION)], "secretPolicy": "Merge",
               "deletionPolicy": "Delete"}),
    );
    env.wait_synced("ecr", 2).await;
    env.wait_ready("ecr").await;
    wait_until("fresh SA points at the created Secret", WAIT, || {
        env.pull_secrets("fresh", "default") == [SHARED]
    })
    .await;

    // "shared" stops matching: our host goes, the rest and the owner's SA entry stay.
    env.namespace("shared", &[]).await;
    let left = wait_for("our host taken out", WAIT, || {
        let s = env.secret("shared", SHARED).unwrap();
        if s["metadata"]["annotations"].get(MERGED_HOSTS).is_none() {
            Ok(s)
        } else {
            Err(format!("{}", records(&s)))
        }
    })
    .await;
    assert!(
        !config_text(&left).contains(&registry(REGION)),
        "our host is gone"
    );
    assert!(config_text(&left).contains(DOCKER_HUB) && config_text(&left).contains(GHCR));
    assert_eq!(left["data"]["note"], B64.encode("keep me"));
    assert_eq!(
        env.pull_secrets("shared", "default"),
        [SHARED],
        "not ours to remove"
    );

    // Deletion: the Secret the operator created goes, with our SA entry.
    env.k8s.delete("ecrpullsecrets", None, "ecr").unwrap();
    wait_until("created Secret deleted", WAIT, || {
        env.secret("fresh", SHARED).is_none()
    })
    .await;
    wait_until("our SA entry removed", WAIT, || {
        env.pull_secrets("fresh", "default").is_empty()
    })
    .await;
    wait_until("CR released", WAIT, || env.get_cr("ecr").is_none()).await;
    assert!(
        env.secret("shared", SHARED).is_some(),
        "someone else's Secret is never deleted"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_editing_the_secret_while_the_operator_refreshes_never_loses_an_edit() {
    let mut env = Env::emulators(Options {
        token_lifetime: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    env.namespace("race", &[]).await;
    shared_secret(&env, "race", &FOREIGN.replace("ops@example.com", "edit-0"));
    env.start_operator().await;
    merge_cr(&env, "ecr", json!(["race"]), json!({}));
    env.wait_ready("ecr").await;

    // Every read of a Secret is answered 25 ms after it is made, so both writers often
    // act on a version the other has already replaced.
    env.k8s.faults().set(FaultConfig {
        answer_delay_ms: 25,
        verbs: vec!["get".into()],
        resources: vec!["secrets".into()],
        ..Default::default()
    });
    // The owner bumps a counter in the Docker Hub entry as a careful client does: read,
    // change their bytes only, write guarded by resourceVersion, retry on 409.
    let path = format!("/api/v1/namespaces/race/secrets/{SHARED}");
    // The race is provoked, not forced: the owner goes on for at least 8 s and until the
    // operator has met their writes (the log shows a 409 the owner did not get), up to 30 s.
    let started = tokio::time::Instant::now();
    let (mut edits, mut lost_races) = (0u32, 0u32);
    let patches = |code: u16| {
        env.requests_where(|r| r.verb == "patch" && r.resource == "secrets" && r.code == code)
            .len()
    };
    loop {
        // The request log is scanned only once the 8 s are up.
        let raced = || patches(409) > lost_races as usize && patches(200) >= edits as usize + 2;
        let elapsed = started.elapsed();
        if elapsed > Duration::from_secs(30) || (elapsed > Duration::from_secs(8) && raced()) {
            break;
        }
        let (code, current) = http(env.k8s.addr(), "GET", &path, None).await;
        assert_eq!(code, 200);
        let text = config_text(&current);
        let next = text.replace(&format!("edit-{edits}"), &format!("edit-{}", edits + 1));
        assert_ne!(next, text, "edit-{edits} is in place: {text}");
        let patch = json!({
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "data": {DOCKERCONFIG_KEY: B64.encode(&next)},
        });
        let (code, _) = http(
            env.k8s.addr(),
            "PATCH",
            &path,
            Some(("application/merge-patch+json", &patch)),
        )
        .await;
        match code {
            200 => edits += 1,
            409 => lost_races += 1,
            other => panic!("owner's patch answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.k8s.faults().clear();
    // The emulator logs everyone's requests: ours are the patches the owner did not make.
    let refreshes = patches(200).saturating_sub(edits as usize);
    let operator_lost = patches(409).saturating_sub(lost_races as usize);
    eprintln!(
        "owner: {edits} edits, {lost_races} lost races; operator: {refreshes} merges, \
         {operator_lost} lost races"
    );
    assert!(
        refreshes >= 2,
        "the operator refreshed during the race ({refreshes} merges)"
    );
    assert!(
        operator_lost >= 1,
        "the operator met the owner's writes at least once"
    );
    assert!(edits >= 20, "the owner edited throughout ({edits} edits)");
    // Once the owner stops, our entry is current again, and every edit of theirs stands.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let last = wait_for("our entry current", WAIT, || {
        let s = env.secret("race", SHARED).unwrap();
        let auth = docker_config(&s)["auths"][registry(REGION)]["auth"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default();
        match env.aws.issued_ecr_tokens().get(&auth) {
            Some(expires) if *expires > now => Ok(s),
            _ => Err("an expired or unknown token".to_string()),
        }
    })
    .await;
    let text = config_text(&last);
    assert!(
        text.contains(&format!("\"edit-{edits}\"")),
        "the last edit stands: {text}"
    );
    assert!(text.contains(GHCR));
    env.shutdown().await;
}
