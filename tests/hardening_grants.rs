//! Hardening II (issue 16), the findings about grants and shared state: one test each,
//! named after the finding it pins. Each fails on 5cb7cbd and passes now.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emulators::registry::Registry;
use http_body_util::BodyExt;
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

/// Every version of ServiceAccount `ns/name` from now on, as a watch delivers it: the
/// names in its `imagePullSecrets`, one list per version.
async fn watch_sa(env: &Env, ns: &str, name: &str) -> Arc<Mutex<Vec<Vec<String>>>> {
    let sa = env.sa(ns, name).expect("the ServiceAccount");
    let rv = sa["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion");
    let path = format!(
        "/api/v1/namespaces/{ns}/serviceaccounts?watch=true&fieldSelector=metadata.name%3D{name}\
         &resourceVersion={rv}&timeoutSeconds=290"
    );
    let request = http::Request::get(path)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("a request");
    let answer = emulators::client::send(env.k8s.addr(), request)
        .await
        .expect("watch starts");
    assert_eq!(answer.status(), 200, "the watch was refused");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let versions = seen.clone();
    tokio::spawn(async move {
        let mut body = answer.into_body();
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if !matches!(
                    event["type"].as_str(),
                    Some("ADDED" | "MODIFIED" | "DELETED")
                ) {
                    continue;
                }
                versions
                    .lock()
                    .unwrap()
                    .push(pull_secret_names(&event["object"]));
            }
        }
    });
    seen
}

/// Touches the ServiceAccount (a label) and waits for the watch to deliver that version:
/// proof the watch saw everything before it.
async fn flush_watch(env: &Env, ns: &str, name: &str, seen: &Mutex<Vec<Vec<String>>>) {
    let mut sa = env.sa(ns, name).expect("the ServiceAccount");
    sa["metadata"]["labels"]["flushed"] = json!("yes");
    let count = seen.lock().unwrap().len();
    env.k8s.apply("serviceaccounts", sa).expect("valid SA");
    wait_until("the watch delivers the flush", WAIT, || {
        seen.lock().unwrap().len() > count
    })
    .await;
}

fn merge_cr(namespace: &str, region: &str) -> Value {
    json!({"secretName": "shared", "namespaces": [namespace], "registries": [registry(region)],
           "secretPolicy": "Merge", "deletionPolicy": "Delete"})
}

/// N4: the ServiceAccount annotation records Secret names, not which CR added them, so
/// a merge CR leaving a shared pull secret removed the entry another CR still needed
/// (`imagePullSecrets: []` until that CR re-added it; a pod created then runs without
/// it). Watched version by version, the entry now never disappears while a CR still
/// targets that namespace with that name: through a move and through a Delete cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_a_merge_cr_leaving_keeps_the_entry_another_still_needs() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["ns-m", "ns-x"] {
        env.namespace(ns, &[]).await;
    }
    env.service_account("ns-m", "default", &[]);
    env.start_operator().await;
    env.cr("m1", merge_cr("ns-m", REGION));
    env.wait_ready("m1").await;
    env.cr("m2", merge_cr("ns-m", "eu-west-1"));
    env.wait_ready("m2").await;
    env.settle(Duration::from_millis(300)).await;
    assert_eq!(env.pull_secrets("ns-m", "default"), ["shared"]);
    let seen = watch_sa(&env, "ns-m", "default").await;

    // m1 moves away: its host leaves ns-m's Secret, m2's stays.
    env.patch_cr("m1", json!({"spec": {"namespaces": ["ns-x"]}}))
        .await;
    wait_until("m1's host out of ns-m/shared", WAIT, || {
        let auths = env.secret("ns-m", "shared").map(|s| secret_auths(&s));
        auths.is_some_and(|a| !a.contains_key(&registry(REGION)) && a.len() == 1)
    })
    .await;
    env.wait_ready("m1").await;
    // Back, then deleted with deletionPolicy Delete: its cleanup leaves m2's entry.
    env.patch_cr("m1", json!({"spec": {"namespaces": ["ns-m"]}}))
        .await;
    env.wait_synced("m1", 1).await;
    env.k8s
        .delete("ecrpullsecrets", None, "m1")
        .expect("delete m1");
    wait_until("m1 gone", WAIT, || env.get_cr("m1").is_none()).await;
    env.settle(Duration::from_millis(500)).await;
    flush_watch(&env, "ns-m", "default", &seen).await;

    let versions = seen.lock().unwrap().clone();
    for (i, names) in versions.iter().enumerate() {
        assert!(
            names.iter().any(|n| n == "shared"),
            "version {i} of ns-m/default lost the entry m2 needs: {versions:?}"
        );
    }
    env.shutdown().await;
}

/// N4, Own policy: two CRs share a `secretName` across namespaces; the one leaving a
/// namespace the other still targets keeps the ServiceAccount entry there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_an_own_cr_leaving_keeps_the_entry_another_still_targets() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["ns-1", "ns-2", "ns-3"] {
        env.namespace(ns, &[]).await;
    }
    env.service_account("ns-1", "default", &[]);
    env.start_operator().await;
    let own = |namespaces: Value| json!({"secretName": "pull", "namespaces": namespaces, "deletionPolicy": "Delete"});
    env.cr("a", own(json!(["ns-1"])));
    env.wait_ready("a").await;
    // b targets ns-1 too (a's Secret there: a conflict for b) and ns-2.
    env.cr("b", own(json!(["ns-1", "ns-2"])));
    env.wait_secret("ns-2", "pull").await;
    env.settle(Duration::from_millis(300)).await;
    assert_eq!(env.pull_secrets("ns-1", "default"), ["pull"]);
    let seen = watch_sa(&env, "ns-1", "default").await;

    env.patch_cr("a", json!({"spec": {"namespaces": ["ns-3"]}}))
        .await;
    env.wait_secret("ns-3", "pull").await;
    env.k8s
        .delete("ecrpullsecrets", None, "a")
        .expect("delete a");
    wait_until("a gone", WAIT, || env.get_cr("a").is_none()).await;
    env.settle(Duration::from_millis(500)).await;
    flush_watch(&env, "ns-1", "default", &seen).await;

    let versions = seen.lock().unwrap().clone();
    for (i, names) in versions.iter().enumerate() {
        assert!(
            names.iter().any(|n| n == "pull"),
            "version {i} of ns-1/default lost the entry b needs: {versions:?}"
        );
    }
    env.shutdown().await;
}

/// N4, the other side: the last CR to leave removes the entry. Another CR of the same
/// `secretName` keeps it only while it lives, targets that namespace and selects that
/// ServiceAccount: here c targets another namespace and e is being deleted (held by a
/// finalizer not ours), so when a leaves, ns-1's entry goes, and c's in ns-2 stays.
/// `make mutants` found this side untested: counting a CR being deleted as live, or
/// keeping the entry for a CR of that name in another namespace, left it behind for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_the_last_cr_needing_an_entry_removes_it() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["ns-1", "ns-2"] {
        env.namespace(ns, &[]).await;
        env.service_account(ns, "default", &[]);
    }
    env.start_operator().await;
    let own = |namespaces: Value| json!({"secretName": "pull", "namespaces": namespaces, "deletionPolicy": "Delete"});
    env.cr("a", own(json!(["ns-1"])));
    env.wait_ready("a").await;
    env.cr("c", own(json!(["ns-2"])));
    env.wait_ready("c").await;
    // e targets ns-1 too (a's Secret there: a conflict for e), then is deleted while
    // another finalizer holds it: it lingers with a deletionTimestamp.
    let hold = "test.example/hold";
    env.k8s
        .apply(
            CR_RESOURCE,
            json!({"apiVersion": CR_API_VERSION, "kind": "ECRPullSecret",
                   "metadata": {"name": "e", "finalizers": [hold]}, "spec": own(json!(["ns-1"]))}),
        )
        .expect("CR passes the CRD schema");
    env.settle(Duration::from_millis(300)).await;
    env.k8s
        .delete("ecrpullsecrets", None, "e")
        .expect("delete e");
    wait_until(
        "e released by the operator, held by the other finalizer",
        WAIT,
        || {
            env.get_cr("e").is_some_and(|e| {
                e["metadata"]["deletionTimestamp"].is_string()
                    && e["metadata"]["finalizers"] == json!([hold])
            })
        },
    )
    .await;
    assert_eq!(env.pull_secrets("ns-1", "default"), ["pull"]);
    assert_eq!(env.pull_secrets("ns-2", "default"), ["pull"]);

    env.k8s
        .delete("ecrpullsecrets", None, "a")
        .expect("delete a");
    wait_until("a gone", WAIT, || env.get_cr("a").is_none()).await;
    wait_for(
        "ns-1/default without the entry no live CR needs",
        WAIT,
        || match env.pull_secrets("ns-1", "default") {
            names if names.is_empty() => Ok(()),
            names => Err(format!("{names:?}")),
        },
    )
    .await;
    assert_eq!(
        env.pull_secrets("ns-2", "default"),
        ["pull"],
        "c's entry kept"
    );
    assert!(env.get_cr("e").is_some(), "e still being deleted");
    env.shutdown().await;
}

/// N8: the token cache's groups and the fetcher's providers were never pruned, and are
/// keyed by CR-controlled fields (region, role, external id): any CR author could grow
/// them without bound. Both now shrink once no CR uses an entry: on deletion and on edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n8_token_groups_and_providers_shrink_once_no_cr_uses_them() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["apps", "apps-2", OPERATOR_NAMESPACE] {
        env.namespace(ns, &[]).await;
    }
    let role = |i: usize| format!("arn:aws:iam::{ACCOUNT}:role/pull-{i}");
    let mut roles: Vec<(String, String)> = (0..4).map(|i| (format!("r{i}"), role(i))).collect();
    // r0 may also take a fifth role (its edit below).
    roles[0].1 = format!("{},{}", role(0), role(4));
    let grants: Vec<(&str, &str)> = roles
        .iter()
        .map(|(c, r)| (c.as_str(), r.as_str()))
        .collect();
    grant_roles(&env.k8s, OPERATOR_NAMESPACE, &grants);
    env.start_operator().await;
    for i in 0..4 {
        env.cr(
            &format!("r{i}"),
            json!({"secretName": format!("pull-{i}"), "namespaces": ["apps"],
                   "aws": {"roleArn": role(i)}}),
        );
    }
    for i in 0..4 {
        env.wait_ready(&format!("r{i}")).await;
    }
    let op = env.operator();
    assert_eq!(op.token_groups(), 4);
    assert_eq!(op.credential_providers(), 4);

    for i in 1..4 {
        env.k8s
            .delete("ecrpullsecrets", None, &format!("r{i}"))
            .expect("delete");
    }
    wait_until("one group and one provider left", WAIT, || {
        env.operator().token_groups() == 1 && env.operator().credential_providers() == 1
    })
    .await;
    // An edit to another identity drops the old one too. The edit also adds a namespace:
    // an identity change alone rewrites no fresh Secret, so nothing would fetch with the
    // new identity until the refresh, and the count below would not say which identity
    // it holds (before, it could pass on the old one still cached).
    env.patch_cr(
        "r0",
        json!({"spec": {"aws": {"roleArn": role(4)}, "namespaces": ["apps", "apps-2"]}}),
    )
    .await;
    env.wait_secret("apps-2", "pull-0").await;
    env.wait_ready("r0").await;
    wait_for("the edited CR's old identity dropped", WAIT, || {
        let op = env.operator();
        match (op.token_groups(), op.credential_providers()) {
            (1, 1) => Ok(()),
            (groups, providers) => Err(format!("{groups} groups, {providers} providers")),
        }
    })
    .await;
    env.shutdown().await;
}

/// N8: a CR naming a credentials Secret it is not granted made the operator watch that
/// Secret and load its keys. Now its grant is read once, by name, and nothing else is
/// kept: no watch opens until a grant lets a token be fetched with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n8_an_ungranted_reference_opens_no_watch() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["apps", "team-x"] {
        env.namespace(ns, &[]).await;
    }
    credentials_secret(&env, "team-x", "keys", None);
    env.start_operator().await;
    env.cr(
        "b",
        json!({"secretName": "pull-b", "namespaces": ["apps"], "aws": uses_keys("team-x", "keys")}),
    );
    wait_reason(&env, "b", "CredentialsNotPermitted").await;
    env.settle(Duration::from_millis(500)).await;
    let watches = |env: &Env| {
        env.requests_where(|r| r.verb == "watch" && r.namespace.as_deref() == Some("team-x"))
            .len()
    };
    assert_eq!(watches(&env), 0, "a watch of team-x's Secret opened");
    assert_eq!(env.operator().watched_credential_secrets(), 0);

    // Granted: then it is watched (rotations apply at once) and used.
    set_grant(&env, "team-x", "keys", Some("b"));
    env.wait_ready("b").await;
    assert_eq!(env.operator().watched_credential_secrets(), 1);
    assert!(watches(&env) >= 1);
    env.shutdown().await;
}

/// N7: registry checks ran inside the reconcile (up to 3 GETs of 10 s each, under a
/// per-(host, token) lock), so a registry that accepts TCP and never answers held every
/// worker, and an unrelated CR waited. Checks now run beside the reconciles: six CRs
/// sharing one token against such a registry delay no other CR's refresh, and the
/// verdict, when it lands, still reaches their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n7_a_registry_that_never_answers_delays_no_unrelated_refresh() {
    // Accepts every connection and holds it, silent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            holding.lock().unwrap().push(stream);
        }
    });
    let mut env = Env::emulators(Options {
        verify_registries: true,
        env: vec![("ECR_REGISTRY_ENDPOINT_URL".into(), format!("http://{addr}"))],
        ..Options::default()
    })
    .await;
    for i in 0..6 {
        env.namespace(&format!("s{i}"), &[]).await;
    }
    env.namespace("unrelated", &[]).await;
    env.start_operator().await;
    for i in 0..6 {
        env.cr(
            &format!("c{i}"),
            json!({"secretName": "pull", "namespaces": [format!("s{i}")],
                   "registries": [registry(REGION)]}),
        );
    }
    // The workers (4) have all taken one of the six.
    wait_until("four of the six Secrets written", WAIT, || {
        (0..6)
            .filter(|i| env.secret(&format!("s{i}"), "pull").is_some())
            .count()
            >= 4
    })
    .await;
    let started = std::time::Instant::now();
    env.cr(
        "u",
        json!({"secretName": "pull-u", "namespaces": ["unrelated"], "region": "eu-west-1",
               "verify": false}),
    );
    env.wait_ready("u").await;
    let took = started.elapsed();
    let lag = Duration::from_millis(watch_lag_from_env().fixed_ms * 6 / 5);
    let bound = Duration::from_secs(3) + lag;
    assert!(
        took < bound,
        "the unrelated CR waited {took:?} (bound {bound:?})"
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the registry was never reached"
    );
    for i in 0..6 {
        env.wait_secret(&format!("s{i}"), "pull").await;
    }

    // The verdict (no answer within 10 s) lands and requeues the CRs that waited.
    let cr = wait_for(
        "c0 RegistryVerified=False Unreachable",
        Duration::from_secs(40),
        || {
            let cr = env.get_cr("c0").ok_or("absent")?;
            match condition(&cr, "RegistryVerified") {
                Some(c) if c["status"] == "False" && c["reason"] == "Unreachable" => Ok(cr),
                _ => Err(format!("status: {}", cr["status"])),
            }
        },
    )
    .await;
    assert_eq!(cr["status"]["registries"][0]["result"], "Unreachable");
    env.shutdown().await;
}
