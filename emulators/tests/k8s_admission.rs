//! The shipped admission policy (deploy/admission-policy.yaml), enforced by the emulator, over
//! HTTP as the operator's ServiceAccount (the emulator's default user): what a stolen token
//! can no longer do, and that everything the operator does still passes.

mod k8s_support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use emulators::k8s::{EmulatorConfig, K8sEmulator, PolicyRule, RbacPolicy, OPERATOR_USER};
use k8s_support::{Api, Reply};
use serde_json::{json, Value};

const NS: &str = "apps";
const SECRETS: &str = "/api/v1/namespaces/apps/secrets";
const SAS: &str = "/api/v1/namespaces/apps/serviceaccounts";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const POLICY: &str = "ecr-creds-refresher-least-privilege";
/// base64 of `{"auths":{}}` and of `{"auths":{"a":{}}}`.
const DOCKER_EMPTY: &str = "eyJhdXRocyI6e319";
const DOCKER_ONE: &str = "eyJhdXRocyI6eyJhIjp7fX19";

async fn start() -> (K8sEmulator, Api) {
    let emu = K8sEmulator::start(EmulatorConfig {
        namespaces: vec!["default".into(), "kube-system".into(), NS.into()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let api = Api::new(emu.addr());
    (emu, api)
}

fn managed_labels() -> Value {
    json!({"app.kubernetes.io/managed-by": "ecr-creds-refresher"})
}

/// A pull secret as the operator creates it (src/reconcile/writes.rs).
fn managed_secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": NS, "labels": managed_labels(),
                        "annotations": {"ecr.creds.dev/owner": "cr"}},
           "type": "kubernetes.io/dockerconfigjson",
           "data": {".dockerconfigjson": DOCKER_EMPTY}})
}

/// Someone else's pull secret: not labelled by us, with other data and annotations.
fn foreign_pull_secret(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": NS, "labels": {"team": "a"},
                        "annotations": {"owner": "team-a"}},
           "type": "kubernetes.io/dockerconfigjson",
           "data": {".dockerconfigjson": DOCKER_EMPTY, "extra": "eA=="}})
}

/// `.dockerconfigjson` holding only ECR registries, spelled as the reference operator and
/// `docker login` write them, and whitespace as a person would.
fn ecr_only_config() -> String {
    B64.encode(
        r#"{ "auths": { "https://123456789012.dkr.ecr.us-east-1.amazonaws.com": {"auth": "QVdTOm9sZA=="},
 "public.ecr.aws": {"username": "AWS", "password": "old", "auth": "QVdTOm9sZA=="} } }"#,
    )
}

/// An unlabelled pull secret the operator may adopt: only ECR registries in it (with
/// someone's label, annotation and an extra data key, which adoption keeps).
fn ecr_only_pull_secret(name: &str) -> Value {
    let mut s = foreign_pull_secret(name);
    s["data"][".dockerconfigjson"] = json!(ecr_only_config());
    s
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A denial by the shipped policy: 403 Forbidden in kube-apiserver's words.
fn assert_denied(r: &Reply, resource: &str, name: &str) {
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(r.body["reason"], "Forbidden");
    let sentence = r.body["details"]["causes"][0]["message"].as_str().unwrap();
    assert!(
        sentence.starts_with(&format!(
            "ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: "
        )),
        "{sentence}"
    );
    assert_eq!(
        r.body["message"],
        format!("{resource} \"{name}\" is forbidden: {sentence}")
    );
    assert_eq!(r.body["details"]["name"], name);
    assert_eq!(r.body["details"]["kind"], resource);
}

#[tokio::test]
async fn creating_a_service_account_token_secret_is_denied_with_kube_apiservers_answer() {
    let (emu, api) = start().await;
    let forged = json!({"metadata": {"name": "steal", "labels": managed_labels(),
                                     "annotations": {"kubernetes.io/service-account.name": "default"}},
                        "type": "kubernetes.io/service-account-token"});
    let r = api
        .post("/api/v1/namespaces/kube-system/secrets", &forged)
        .await;
    assert_denied(&r, "secrets", "steal");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("not a Secret of type kubernetes.io/service-account-token"));
    assert!(emu.get("secrets", Some("kube-system"), "steal").is_none());
    let denials = emu.admission_denials();
    assert_eq!(denials.len(), 1);
    let d = &denials[0];
    assert_eq!(
        (d.policy.as_str(), d.user.as_str(), d.verb.as_str()),
        (POLICY, OPERATOR_USER, "create")
    );
    assert_eq!(
        (d.resource.as_str(), d.namespace.as_str(), d.name.as_str()),
        ("secrets", "kube-system", "steal")
    );
}

#[tokio::test]
async fn creating_an_opaque_secret_is_denied_even_when_labelled_or_already_there() {
    let (emu, api) = start().await;
    let opaque =
        json!({"metadata": {"name": "o", "labels": managed_labels()}, "data": {"k": "dg=="}});
    assert_denied(&api.post(SECRETS, &opaque).await, "secrets", "o");
    // Admission answers before storage finds the name taken, as on a real server.
    emu.apply(
        "secrets",
        json!({"metadata": {"name": "o", "namespace": NS}, "data": {}}),
    )
    .unwrap();
    assert_denied(&api.post(SECRETS, &opaque).await, "secrets", "o");
}

#[tokio::test]
async fn creating_an_unlabelled_dockerconfigjson_secret_is_denied() {
    let (_emu, api) = start().await;
    let mut s = managed_secret("pull");
    s["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "someone-else"});
    assert_denied(&api.post(SECRETS, &s).await, "secrets", "pull");
    s["metadata"].as_object_mut().unwrap().remove("labels");
    assert_denied(&api.post(SECRETS, &s).await, "secrets", "pull");
}

#[tokio::test]
async fn deleting_an_unlabelled_secret_is_denied() {
    let (emu, api) = start().await;
    emu.apply("secrets", foreign_pull_secret("theirs")).unwrap();
    emu.apply(
        "secrets",
        json!({"metadata": {"name": "db", "namespace": NS}, "data": {"k": "dg=="}}),
    )
    .unwrap();
    for name in ["theirs", "db"] {
        let r = api.delete(&format!("{SECRETS}/{name}")).await;
        assert_denied(&r, "secrets", name);
        assert!(emu.get("secrets", Some(NS), name).is_some());
    }
}

#[tokio::test]
async fn patching_an_unlabelled_opaque_secret_is_denied_even_when_the_patch_labels_it() {
    let (emu, api) = start().await;
    emu.apply(
        "secrets",
        json!({"metadata": {"name": "db", "namespace": NS}, "data": {"k": "dg=="}}),
    )
    .unwrap();
    let path = format!("{SECRETS}/db");
    let r = api
        .patch(&path, MERGE, &json!({"data": {"k": "eA=="}}))
        .await;
    assert_denied(&r, "secrets", "db");
    let r = api
        .patch(
            &path,
            MERGE,
            &json!({"metadata": {"labels": managed_labels()}, "data": {"k": "eA=="}}),
        )
        .await;
    assert_denied(&r, "secrets", "db");
    assert_eq!(
        emu.get("secrets", Some(NS), "db").unwrap()["data"]["k"],
        "dg=="
    );
}

#[tokio::test]
async fn a_merge_into_a_foreign_pull_secret_may_change_nothing_else() {
    let (emu, api) = start().await;
    emu.apply("secrets", foreign_pull_secret("theirs")).unwrap();
    let path = format!("{SECRETS}/theirs");
    for forbidden in [
        json!({"data": {"extra": "eQ=="}}),
        json!({"data": {"added": "eQ=="}}),
        json!({"data": {"extra": null}}),
        json!({"metadata": {"annotations": {"owner": "us"}}}),
        json!({"metadata": {"annotations": {"new": "x"}}}),
        json!({"metadata": {"labels": {"team": "b"}}}),
        json!({"metadata": {"finalizers": ["x/y"]}}),
        json!({"immutable": true}),
        json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
            "name": "c", "uid": "0d1e2f30-0000-4000-8000-000000000000"}]}}),
    ] {
        let r = api.patch(&path, MERGE, &forbidden).await;
        assert_denied(&r, "secrets", "theirs");
    }
    assert_eq!(
        emu.get("secrets", Some(NS), "theirs").unwrap()["data"],
        foreign_pull_secret("theirs")["data"]
    );
}

#[tokio::test]
async fn removing_our_label_from_a_managed_secret_is_denied() {
    let (emu, api) = start().await;
    emu.apply("secrets", managed_secret("pull")).unwrap();
    let r = api
        .patch(
            &format!("{SECRETS}/pull"),
            MERGE,
            &json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}}),
        )
        .await;
    assert_denied(&r, "secrets", "pull");
}

#[tokio::test]
async fn patching_a_service_accounts_secrets_is_denied() {
    let (emu, api) = start().await;
    let path = format!("{SAS}/default");
    let r = api
        .patch(
            &path,
            "application/strategic-merge-patch+json",
            &json!({"secrets": [{"name": "steal"}]}),
        )
        .await;
    assert_denied(&r, "serviceaccounts", "default");
    let sa = emu.get("serviceaccounts", Some(NS), "default").unwrap();
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&sa)},
                    {"op": "add", "path": "/secrets", "value": [{"name": "steal"}]}]),
        )
        .await;
    assert_denied(&r, "serviceaccounts", "default");
    let r = api
        .patch(
            &path,
            MERGE,
            &json!({"automountServiceAccountToken": false}),
        )
        .await;
    assert_denied(&r, "serviceaccounts", "default");
}

#[tokio::test]
async fn patching_a_service_accounts_labels_or_another_annotation_is_denied() {
    let (emu, api) = start().await;
    emu.apply(
        "serviceaccounts",
        json!({"metadata": {"name": "app", "namespace": NS, "labels": {"a": "1"},
                            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}}}),
    )
    .unwrap();
    let path = format!("{SAS}/app");
    for forbidden in [
        json!({"metadata": {"labels": {"a": "2"}}}),
        json!({"metadata": {"labels": {"b": "1"}}}),
        json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::2:role/admin"}}}),
        json!({"metadata": {"annotations": {"ecr.creds.dev/other": "x"}}}),
        json!({"metadata": {"finalizers": ["x/y"]}}),
    ] {
        let r = api.patch(&path, MERGE, &forbidden).await;
        assert_denied(&r, "serviceaccounts", "app");
    }
}

#[tokio::test]
async fn creating_or_deleting_a_service_account_is_denied() {
    let (emu, api) = start().await;
    let r = api.post(SAS, &json!({"metadata": {"name": "mine"}})).await;
    assert_denied(&r, "serviceaccounts", "mine");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .ends_with("may not create ServiceAccounts"));
    let r = api.delete(&format!("{SAS}/default")).await;
    assert_denied(&r, "serviceaccounts", "default");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .ends_with("may not delete ServiceAccounts"));
    assert!(emu.get("serviceaccounts", Some(NS), "default").is_some());
}

#[tokio::test]
async fn the_operators_own_secret_lifecycle_is_allowed() {
    let (emu, api) = start().await;
    let r = api.post(SECRETS, &managed_secret("pull")).await;
    assert_eq!(r.code, 201, "{}", r.body);
    // A second create meets the name (the operator then decides to adopt or refresh).
    let again = api.post(SECRETS, &managed_secret("pull")).await;
    assert_eq!(again.code, 409, "{}", again.body);
    assert_eq!(again.body["reason"], "AlreadyExists");
    let path = format!("{SECRETS}/pull");
    // The refresh: a merge patch with a resourceVersion precondition (writes.rs).
    let r = api
        .patch(
            &path,
            MERGE,
            &json!({"metadata": {"resourceVersion": rv(&r.body), "labels": managed_labels(),
                                 "annotations": {"ecr.creds.dev/checksum": "c1"}},
                    "data": {".dockerconfigjson": DOCKER_ONE}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&r.body)},
                    {"op": "replace", "path": "/data/.dockerconfigjson", "value": DOCKER_EMPTY}]),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = api
        .call(
            "DELETE",
            &path,
            Some("application/json"),
            // As writes.rs deletes: uid and resourceVersion preconditions.
            Some(&json!({"preconditions": {"uid": r.body["metadata"]["uid"],
                                           "resourceVersion": rv(&r.body)}})),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(emu.get("secrets", Some(NS), "pull").is_none());
    assert_eq!(emu.admission_denials(), vec![]);
}

#[tokio::test]
async fn adopting_an_unlabelled_dockerconfigjson_secret_by_a_patch_that_labels_it_is_allowed() {
    let (emu, api) = start().await;
    let old = emu
        .apply("secrets", ecr_only_pull_secret("theirs"))
        .unwrap();
    // Exactly the adoption patch of writes.rs: labels, annotations and data together.
    let r = api
        .patch(
            &format!("{SECRETS}/theirs"),
            MERGE,
            &json!({"metadata": {"resourceVersion": rv(&old), "labels": managed_labels(),
                                 "annotations": {"ecr.creds.dev/owner": "cr"}},
                    "data": {".dockerconfigjson": DOCKER_ONE}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["metadata"]["labels"]["team"], "a");
    assert_eq!(emu.admission_denials(), vec![]);
}

#[tokio::test]
async fn a_merge_changing_only_dockerconfigjson_and_merged_hosts_of_a_foreign_pull_secret_is_allowed(
) {
    let (emu, api) = start().await;
    let old = emu.apply("secrets", foreign_pull_secret("theirs")).unwrap();
    let r = api
        .patch(
            &format!("{SECRETS}/theirs"),
            MERGE,
            &json!({"metadata": {"resourceVersion": rv(&old),
                                 "annotations": {"ecr.creds.dev/merged-hosts": "a"}},
                    "data": {".dockerconfigjson": DOCKER_ONE}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    // And taking the merge back out again.
    let r = api
        .patch(
            &format!("{SECRETS}/theirs"),
            MERGE,
            &json!({"metadata": {"annotations": {"ecr.creds.dev/merged-hosts": null}},
                    "data": {".dockerconfigjson": DOCKER_EMPTY}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(
        r.body["metadata"]["annotations"],
        json!({"owner": "team-a"})
    );
    assert_eq!(emu.admission_denials(), vec![]);
}

#[tokio::test]
async fn the_operators_service_account_json_patches_are_allowed() {
    let (emu, api) = start().await;
    emu.apply(
        "serviceaccounts",
        json!({"metadata": {"name": "app", "namespace": NS, "labels": {"a": "1"}},
               "secrets": [{"name": "tok"}], "imagePullSecrets": [{"name": "theirs"}]}),
    )
    .unwrap();
    let path = format!("{SAS}/app");
    let sa = emu.get("serviceaccounts", Some(NS), "app").unwrap();
    // No annotations yet: the map is added whole (writes.rs).
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&sa)},
                    {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "theirs"}, {"name": "pull"}]},
                    {"op": "add", "path": "/metadata/annotations",
                     "value": {"ecr.creds.dev/image-pull-secrets": "pull"}}]),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    // With annotations: the one key is added, then removed.
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&r.body)},
                    {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "theirs"}, {"name": "pull"}, {"name": "p2"}]},
                    {"op": "add", "path": "/metadata/annotations/ecr.creds.dev~1image-pull-secrets", "value": "pull,p2"}]),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&r.body)},
                    {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "theirs"}]},
                    {"op": "remove", "path": "/metadata/annotations/ecr.creds.dev~1image-pull-secrets"}]),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["secrets"], json!([{"name": "tok"}]));
    assert_eq!(emu.admission_denials(), vec![]);
}

#[tokio::test]
async fn requests_of_another_user_are_never_affected() {
    let (emu, api) = start().await;
    let token_secret = |name: &str| {
        json!({"metadata": {"name": name,
                            "annotations": {"kubernetes.io/service-account.name": "default"}},
               "type": "kubernetes.io/service-account-token"})
    };
    let kube_system = "/api/v1/namespaces/kube-system/secrets";
    // Another ServiceAccount, and the cluster admin (no user configured).
    emu.set_user(Some("system:serviceaccount:kube-system:other".into()));
    assert_eq!(api.post(kube_system, &token_secret("a")).await.code, 201);
    emu.set_user(None);
    assert_eq!(api.post(kube_system, &token_secret("b")).await.code, 201);
    assert_eq!(api.delete(&format!("{SAS}/default")).await.code, 200);
    // Under RBAC, its policy's user is who the request is.
    emu.set_user(Some(OPERATOR_USER.into()));
    emu.set_rbac(Some(RbacPolicy {
        user: "jane".into(),
        rules: vec![PolicyRule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..PolicyRule::default()
        }],
    }));
    assert_eq!(api.post(kube_system, &token_secret("c")).await.code, 201);
    assert_eq!(emu.admission_denials(), vec![]);
    // The operator's name in any namespace is restricted (the policy matches by name).
    emu.set_rbac(None);
    emu.set_user(Some(
        "system:serviceaccount:elsewhere:ecr-creds-refresher".into(),
    ));
    let r = api.post(kube_system, &token_secret("d")).await;
    assert_denied(&r, "secrets", "d");
}

#[tokio::test]
async fn the_control_endpoints_list_denials_switch_users_and_turn_admission_off() {
    let (emu, api) = start().await;
    let opaque = |name: &str| json!({"metadata": {"name": name}, "data": {}});
    assert_eq!(api.post(SECRETS, &opaque("a")).await.code, 403);
    let r = api.get("/_emulator/admission").await;
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["user"], OPERATOR_USER);
    assert_eq!(r.body["denials"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["denials"][0]["name"], "a");
    // Another user is unaffected...
    let r = api
        .post(
            "/_emulator/user",
            &json!({"user": "system:serviceaccount:x:y"}),
        )
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(api.post(SECRETS, &opaque("b")).await.code, 201);
    // ...and so is the operator once admission is off.
    api.post("/_emulator/user", &json!({"user": OPERATOR_USER}))
        .await;
    assert_eq!(api.delete("/_emulator/admission").await.code, 200);
    assert_eq!(api.post(SECRETS, &opaque("c")).await.code, 201);
    assert_eq!(api.get("/_emulator/admission").await.body["enabled"], false);
    // Policies can be installed over HTTP too.
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/admission-policy.yaml"
    ))
    .unwrap();
    let r = api
        .post("/_emulator/admission", &json!({"policies": [policy]}))
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(api.post(SECRETS, &opaque("d")).await.code, 403);
    assert_eq!(emu.admission_denials().len(), 2);
}

// --- N3 (issue 16): what adoption, a stolen token and the CR may no longer do ---

/// The adoption patch of writes.rs against `name`, plus `extra` merged in.
fn adoption_patch(old: &Value, extra: Value) -> Value {
    let mut patch = json!({"metadata": {"resourceVersion": rv(old), "labels": managed_labels(),
                                        "annotations": {"ecr.creds.dev/owner": "cr"}},
                           "data": {".dockerconfigjson": DOCKER_ONE}});
    merge(&mut patch, extra);
    patch
}

/// RFC 7386 merge of `extra` into `into`.
fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

#[tokio::test]
async fn n3_label_and_rewrite_beyond_adoption_is_denied() {
    let (emu, api) = start().await;
    let path = format!("{SECRETS}/theirs");
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "c",
                            "uid": "0d1e2f30-0000-4000-8000-000000000000"}]);
    for (what, extra) in [
        (
            "rewrite another data key",
            json!({"data": {"extra": "eQ=="}}),
        ),
        ("add a data key", json!({"data": {"added": "eQ=="}})),
        ("remove a data key", json!({"data": {"extra": null}})),
        (
            "add an annotation",
            json!({"metadata": {"annotations": {"new": "x"}}}),
        ),
        (
            "rewrite an annotation",
            json!({"metadata": {"annotations": {"owner": "us"}}}),
        ),
        (
            "add a finalizer",
            json!({"metadata": {"finalizers": ["x/y"]}}),
        ),
        (
            "add a label",
            json!({"metadata": {"labels": {"more": "1"}}}),
        ),
        (
            "change a label",
            json!({"metadata": {"labels": {"team": "b"}}}),
        ),
        (
            "add ownerReferences",
            json!({"metadata": {"ownerReferences": owner_ref}}),
        ),
        ("make it immutable", json!({"immutable": true})),
    ] {
        let old = emu
            .apply("secrets", ecr_only_pull_secret("theirs"))
            .unwrap();
        let r = api.patch(&path, MERGE, &adoption_patch(&old, extra)).await;
        assert_eq!(r.code, 403, "{what}: {}", r.body);
        assert_denied(&r, "secrets", "theirs");
    }
    // Labelling a pull secret that holds anything but ECR registries (kube-system's
    // Docker Hub credentials, an empty one, a credential helper) is no adoption.
    for (what, content) in [
        (
            "docker hub",
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"eDp5"}}}"#,
        ),
        (
            "ECR and docker hub",
            r#"{"auths":{"123456789012.dkr.ecr.us-east-1.amazonaws.com":{"auth":"eDp5"},"docker.io":{"auth":"eDp5"}}}"#,
        ),
        (
            "a look-alike host",
            r#"{"auths":{"123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example":{"auth":"eDp5"}}}"#,
        ),
        ("no entry", r#"{"auths":{}}"#),
        (
            "a credential helper",
            r#"{"auths":{"123456789012.dkr.ecr.us-east-1.amazonaws.com":{"auth":"eDp5"}},"credsStore":"evil"}"#,
        ),
    ] {
        let mut s = foreign_pull_secret("theirs");
        s["metadata"]["namespace"] = json!("kube-system");
        s["data"][".dockerconfigjson"] = json!(B64.encode(content));
        let old = emu.apply("secrets", s).unwrap();
        let r = api
            .patch(
                "/api/v1/namespaces/kube-system/secrets/theirs",
                MERGE,
                &adoption_patch(&old, json!({})),
            )
            .await;
        assert_eq!(r.code, 403, "{what}: {}", r.body);
    }
    assert_eq!(
        emu.get("secrets", Some(NS), "theirs").unwrap()["data"],
        ecr_only_pull_secret("theirs")["data"]
    );
}

#[tokio::test]
async fn n3_owner_references_finalizers_and_immutable_of_a_managed_secret_are_fixed() {
    let (emu, api) = start().await;
    let path = format!("{SECRETS}/pull");
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "c",
                            "uid": "0d1e2f30-0000-4000-8000-000000000000"}]);
    for extra in [
        json!({"metadata": {"ownerReferences": owner_ref}}),
        json!({"metadata": {"finalizers": ["x/y"]}}),
        json!({"immutable": true}),
        json!({"immutable": false}),
        json!({"data": {"other": "eQ=="}}),
        json!({"metadata": {"annotations": {"not-ours": "x"}}}),
    ] {
        emu.apply("secrets", managed_secret("pull")).unwrap();
        let r = api.patch(&path, MERGE, &extra).await;
        assert_eq!(r.code, 403, "{extra}: {}", r.body);
    }
    // Nor may a create carry them.
    for extra in [
        json!({"metadata": {"ownerReferences": owner_ref}}),
        json!({"metadata": {"finalizers": ["x/y"]}}),
        json!({"immutable": true}),
        json!({"data": {"other": "eQ=="}}),
    ] {
        let mut s = managed_secret("fresh");
        merge(&mut s, extra.clone());
        let r = api.post(SECRETS, &s).await;
        assert_eq!(r.code, 403, "{extra}: {}", r.body);
    }
    // A refresh changing the operator's annotations and the data still passes.
    let old = emu.apply("secrets", managed_secret("pull")).unwrap();
    let r = api
        .patch(
            &path,
            MERGE,
            &json!({"metadata": {"resourceVersion": rv(&old), "labels": managed_labels(),
                                 "annotations": {"ecr.creds.dev/checksum": "c2",
                                                 "ecr.creds.dev/expires-at": "2026-12-06T18:00:00Z"}},
                    "data": {".dockerconfigjson": DOCKER_ONE}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
}

#[tokio::test]
async fn n3_deleting_a_labelled_secret_of_another_type_is_denied() {
    let (emu, api) = start().await;
    for type_ in [
        "Opaque",
        "kubernetes.io/tls",
        "kubernetes.io/service-account-token",
    ] {
        emu.apply(
            "secrets",
            json!({"metadata": {"name": "labelled", "namespace": NS, "labels": managed_labels(),
                                "annotations": {"kubernetes.io/service-account.name": "default"}},
                   "type": type_, "data": {"k": "dg=="}}),
        )
        .unwrap();
        let r = api.delete(&format!("{SECRETS}/labelled")).await;
        assert_eq!(r.code, 403, "{type_}: {}", r.body);
        assert!(emu.get("secrets", Some(NS), "labelled").is_some());
        emu.delete("secrets", Some(NS), "labelled").unwrap();
    }
}

const CRS: &str = "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets";

fn cr(name: &str) -> Value {
    json!({"apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret",
           "metadata": {"name": name, "finalizers": ["example.com/keep"]},
           "spec": {"secretName": "pull", "namespaces": ["team-a"]}})
}

#[tokio::test]
async fn n3_an_ecrpullsecret_takes_only_status_and_the_cleanup_finalizer() {
    let (emu, api) = start().await;
    let path = format!("{CRS}/a");
    let r = api.post(CRS, &cr("new")).await;
    assert_eq!(r.code, 403, "create: {}", r.body);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .ends_with("may not create ECRPullSecrets"));
    for (what, patch) in [
        (
            "re-aim it",
            json!({"spec": {"namespaces": ["kube-system"]}}),
        ),
        ("add a label", json!({"metadata": {"labels": {"x": "y"}}})),
        (
            "add an annotation",
            json!({"metadata": {"annotations": {"x": "y"}}}),
        ),
        (
            "drop another finalizer",
            json!({"metadata": {"finalizers": ["ecr.creds.dev/cleanup"]}}),
        ),
        (
            "add another finalizer",
            json!({"metadata": {"finalizers": ["example.com/keep", "x/y"]}}),
        ),
    ] {
        emu.apply("ecrpullsecrets", cr("a")).unwrap();
        let r = api.patch(&path, MERGE, &patch).await;
        assert_eq!(r.code, 403, "{what}: {}", r.body);
        assert_eq!(r.body["reason"], "Forbidden");
        assert!(r.body["message"].as_str().unwrap().starts_with(&format!(
            "ecrpullsecrets.ecr.creds.dev \"a\" is forbidden: ValidatingAdmissionPolicy '{POLICY}'"
        )));
    }
    assert_eq!(
        emu.get("ecrpullsecrets", None, "a").unwrap()["spec"]["namespaces"],
        json!(["team-a"])
    );
    let r = api.delete(&path).await;
    assert_eq!(r.code, 403, "delete: {}", r.body);

    // What the operator does: its finalizer in and out (finalizer.rs's JSON patch), and
    // status through the subresource.
    let current = emu.apply("ecrpullsecrets", cr("a")).unwrap();
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&current)},
                    {"op": "add", "path": "/metadata/finalizers",
                     "value": ["example.com/keep", "ecr.creds.dev/cleanup"]}]),
        )
        .await;
    assert_eq!(r.code, 200, "add the finalizer: {}", r.body);
    let r = api
        .patch(
            &path,
            JSON_PATCH,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv(&r.body)},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/keep"]}]),
        )
        .await;
    assert_eq!(r.code, 200, "remove the finalizer: {}", r.body);
    let r = api
        .patch(
            &format!("{path}/status"),
            MERGE,
            &json!({"status": {"syncedNamespaces": 1}}),
        )
        .await;
    assert_eq!(r.code, 200, "status: {}", r.body);
}

/// The emulator's CEL (the cel-rust crate) checked by a second implementation, Google's
/// cel-cpp (cel-expr-python in the tests' venv, from tests/cel/requirements.txt): every
/// case the other tests here put to the shipped policy is recorded, then replayed by
/// tests/cel/second_evaluator.py, which reads deploy/admission-policy.yaml itself and
/// must reach the same verdict, with the same message, on each.
#[test]
fn a_second_cel_evaluator_agrees_with_the_emulator_on_every_case() {
    const CASES: &str = "K8S_EMULATOR_ADMISSION_CASES";
    if std::env::var_os(CASES).is_some() {
        return; // Inside the recording run below.
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cases = std::env::temp_dir().join(format!("admission-cases-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&cases);
    // This test binary again: every other test in it, each admission case recorded.
    // Their own failures are theirs to report (they run on their own too); the question
    // here is only whether two evaluators agree on the cases they made.
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--skip",
            "a_second_cel_evaluator",
            "--test-threads",
            "2",
            "-q",
        ])
        .env(CASES, &cases)
        .output()
        .unwrap();
    assert!(run.status.code().is_some(), "the recording run was killed");
    let python = format!("{root}/.venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(format!("{root}/tests/cel/second_evaluator.py"))
        .arg(format!("{root}/deploy/admission-policy.yaml"))
        .arg(&cases)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (`make venv` installs cel-expr-python)"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary from the second evaluator:\n{said}"));
    assert!(
        out.status.success(),
        "cel-cpp disagrees with the emulator:\n{said}"
    );
    assert_eq!(summary["disagreements"], 0, "{said}");
    // It really replayed the suite: both verdicts, many cases.
    let n = |k: &str| summary[k].as_u64().unwrap_or(0);
    assert!(
        n("checked") >= 40 && n("admitted") >= 10 && n("denied") >= 20,
        "too few cases replayed: {summary}"
    );
    let _ = std::fs::remove_file(&cases);
}
