//! The emulator's request/response semantics, pinned against what the Kubernetes API
//! documentation and kube-apiserver specify.

mod k8s_support;

use emulators::k8s::K8sEmulator;
use k8s_support::{admin_config, Api};
use serde_json::{json, Value};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const SAS: &str = "/api/v1/namespaces/default/serviceaccounts";
const EPS: &str = "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets";

async fn start() -> (K8sEmulator, Api) {
    let emu = K8sEmulator::start(admin_config()).await.unwrap();
    let api = Api::new(emu.addr());
    (emu, api)
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "dg=="}})
}

fn eps(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"secretName": "s", "namespaces": ["default"]}})
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn list_pagination_returns_every_object_once_and_continue_only_while_more_remain() {
    let (_emu, api) = start().await;
    for i in 0..7 {
        assert_eq!(api.post(SECRETS, &secret(&format!("s{i}"))).await.code, 201);
    }
    let mut names = Vec::new();
    let mut cont: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cont {
            Some(c) => format!("{SECRETS}?limit=3&continue={c}"),
            None => format!("{SECRETS}?limit=3"),
        };
        let r = api.get(&path).await;
        assert_eq!(r.code, 200);
        assert_eq!(r.body["kind"], "SecretList");
        assert!(r.body["metadata"]["resourceVersion"].as_str().is_some());
        pages += 1;
        for it in r.body["items"].as_array().unwrap() {
            names.push(it["metadata"]["name"].as_str().unwrap().to_string());
        }
        if pages == 1 {
            assert_eq!(r.body["metadata"]["remainingItemCount"], 4);
        }
        match r.body["metadata"]["continue"].as_str() {
            Some(c) => cont = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn continue_token_older_than_the_history_window_is_410_expired() {
    let (emu, api) = start().await;
    for i in 0..3 {
        api.post(SECRETS, &secret(&format!("s{i}"))).await;
    }
    let r = api.get(&format!("{SECRETS}?limit=1")).await;
    let c = r.body["metadata"]["continue"].as_str().unwrap().to_string();
    api.post(SECRETS, &secret("later")).await;
    emu.compact();
    let r = api.get(&format!("{SECRETS}?limit=1&continue={c}")).await;
    assert_eq!(r.code, 410);
    assert_eq!(r.body["reason"], "Expired");
    assert_eq!(r.body["kind"], "Status");
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a")).await;
    let mut b = secret("b");
    b["metadata"]["labels"] = json!({"app": "y", "tier": "t"});
    api.post(SECRETS, &b).await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = api.get(&format!("{SECRETS}?labelSelector=app%3Dy")).await;
    assert_eq!(names(&r.body), ["b"]);
    let r = api
        .get(&format!("{SECRETS}?labelSelector=app+notin+(y),!tier"))
        .await;
    assert_eq!(names(&r.body), ["a"]);
    let r = api
        .get("/api/v1/secrets?fieldSelector=metadata.name%3Da")
        .await;
    assert_eq!(names(&r.body), ["a"]);
    let r = api
        .get(&format!("{SECRETS}?fieldSelector=spec.x%3D1"))
        .await;
    assert_eq!(r.code, 400);
}

#[tokio::test]
async fn objects_get_uid_creation_timestamp_and_a_global_increasing_resource_version() {
    let (_emu, api) = start().await;
    let a = api.post(SECRETS, &secret("a")).await.body;
    let b = api
        .post(SAS, &json!({"metadata": {"name": "sa"}}))
        .await
        .body;
    assert!(a["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(a["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let (ra, rb): (u64, u64) = (rv(&a).parse().unwrap(), rv(&b).parse().unwrap());
    assert!(rb > ra);
    assert_eq!(a["type"], "Opaque");
}

#[tokio::test]
async fn create_of_an_existing_name_is_409_already_exists() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a")).await;
    let r = api.post(SECRETS, &secret("a")).await;
    assert_eq!(r.code, 409);
    assert_eq!(r.body["reason"], "AlreadyExists");
    assert_eq!(r.body["message"], "secrets \"a\" already exists");
    assert_eq!(r.body["details"]["name"], "a");
}

#[tokio::test]
async fn missing_object_is_404_not_found_with_details() {
    let (_emu, api) = start().await;
    let r = api.get(&format!("{SECRETS}/nope")).await;
    assert_eq!(r.code, 404);
    assert_eq!(r.body["reason"], "NotFound");
    assert_eq!(r.body["message"], "secrets \"nope\" not found");
    assert_eq!(r.body["details"]["kind"], "secrets");
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_404_for_the_namespace() {
    let (_emu, api) = start().await;
    let r = api
        .post("/api/v1/namespaces/ghost/secrets", &secret("a"))
        .await;
    assert_eq!(r.code, 404);
    assert_eq!(r.body["message"], "namespaces \"ghost\" not found");
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_is_409_conflict() {
    let (_emu, api) = start().await;
    let created = api.post(SECRETS, &secret("a")).await.body;
    let mut first = created.clone();
    first["data"]["k"] = json!("eA==");
    assert_eq!(api.put(&format!("{SECRETS}/a"), &first).await.code, 200);
    let mut stale = created.clone();
    stale["data"]["k"] = json!("eQ==");
    let r = api.put(&format!("{SECRETS}/a"), &stale).await;
    assert_eq!(r.code, 409);
    assert_eq!(r.body["reason"], "Conflict");
    assert_eq!(
        r.body["message"],
        "Operation cannot be fulfilled on secrets \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion the replace is unconditional.
    let mut uncond = stale.clone();
    uncond["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(api.put(&format!("{SECRETS}/a"), &uncond).await.code, 200);
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version() {
    let (_emu, api) = start().await;
    let created = api.post(SECRETS, &secret("a")).await.body;
    let again = api.put(&format!("{SECRETS}/a"), &created).await.body;
    assert_eq!(rv(&again), rv(&created));
    let p = api
        .patch(
            &format!("{SECRETS}/a"),
            "application/merge-patch+json",
            &json!({"data": {"k": "dg=="}}),
        )
        .await;
    assert_eq!(rv(&p.body), rv(&created));
}

#[tokio::test]
async fn resource_version_inside_a_patch_is_a_precondition() {
    let (_emu, api) = start().await;
    let created = api.post(SECRETS, &secret("a")).await.body;
    let ok = api
        .patch(
            &format!("{SECRETS}/a"),
            "application/merge-patch+json",
            &json!({"metadata": {"resourceVersion": rv(&created), "labels": {"n": "1"}}}),
        )
        .await;
    assert_eq!(ok.code, 200);
    let stale = api
        .patch(
            &format!("{SECRETS}/a"),
            "application/merge-patch+json",
            &json!({"metadata": {"resourceVersion": rv(&created), "labels": {"n": "2"}}}),
        )
        .await;
    assert_eq!(stale.code, 409);
    assert_eq!(stale.body["reason"], "Conflict");
}

#[tokio::test]
async fn json_patch_with_a_failing_test_is_422_and_changes_nothing() {
    let (_emu, api) = start().await;
    let created = api
        .post(
            SAS,
            &json!({"metadata": {"name": "sa"}, "imagePullSecrets": [{"name": "a"}]}),
        )
        .await
        .body;
    let ops = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "b"}}
    ]);
    let r = api
        .patch(&format!("{SAS}/sa"), "application/json-patch+json", &ops)
        .await;
    assert_eq!(r.code, 422);
    assert_eq!(r.body["reason"], "Invalid");
    let ops = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv(&created)},
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "b"}}
    ]);
    let r = api
        .patch(&format!("{SAS}/sa"), "application/json-patch+json", &ops)
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(
        r.body["imagePullSecrets"],
        json!([{"name": "a"}, {"name": "b"}])
    );
}

#[tokio::test]
async fn strategic_and_merge_patches_replace_service_account_image_pull_secrets_whole() {
    let (_emu, api) = start().await;
    api.post(SAS, &json!({"metadata": {"name": "sa"}, "imagePullSecrets": [{"name": "theirs"}], "secrets": [{"name": "s1"}]})).await;
    let r = api
        .patch(
            &format!("{SAS}/sa"),
            "application/strategic-merge-patch+json",
            &json!({"imagePullSecrets": [{"name": "ours"}], "secrets": [{"name": "s2"}]}),
        )
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(r.body["imagePullSecrets"], json!([{"name": "ours"}]));
    assert_eq!(r.body["secrets"], json!([{"name": "s1"}, {"name": "s2"}]));
    let r = api
        .patch(
            &format!("{SAS}/sa"),
            "application/merge-patch+json",
            &json!({"imagePullSecrets": [{"name": "x"}]}),
        )
        .await;
    assert_eq!(r.body["imagePullSecrets"], json!([{"name": "x"}]));
}

#[tokio::test]
async fn strategic_merge_patch_on_a_custom_resource_is_415() {
    let (_emu, api) = start().await;
    api.post(EPS, &json!({"apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret", "metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["default"]}})).await;
    let r = api
        .patch(
            &format!("{EPS}/p"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"secretName": "t"}}),
        )
        .await;
    assert_eq!(r.code, 415);
    assert_eq!(r.body["reason"], "UnsupportedMediaType");
    let r = api
        .patch(&format!("{EPS}/p"), "text/plain", &json!({}))
        .await;
    assert_eq!(r.code, 415);
}

#[tokio::test]
async fn status_subresource_separates_spec_from_status_and_generation_follows_spec() {
    let (_emu, api) = start().await;
    let c = api
        .post(EPS, &json!({"apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret", "metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["default"]}, "status": {"syncedNamespaces": 1}}))
        .await
        .body;
    assert_eq!(c["metadata"]["generation"], 1);
    assert!(c.get("status").is_none(), "status is dropped on create");
    // Status write: only status changes, generation stays.
    let s = api
        .patch(
            &format!("{EPS}/p/status"),
            "application/merge-patch+json",
            &json!({"status": {"syncedNamespaces": 2}, "spec": {"secretName": "ignored"}}),
        )
        .await
        .body;
    assert_eq!(s["status"]["syncedNamespaces"], 2);
    assert_eq!(s["spec"]["secretName"], "s");
    assert_eq!(s["metadata"]["generation"], 1);
    // Main write: status ignored, spec change bumps generation.
    let mut m = s.clone();
    m["spec"]["secretName"] = json!("t");
    m["status"] = json!({"syncedNamespaces": 0});
    let m = api.put(&format!("{EPS}/p"), &m).await.body;
    assert_eq!(m["spec"]["secretName"], "t");
    assert_eq!(m["status"]["syncedNamespaces"], 2);
    assert_eq!(m["metadata"]["generation"], 2);
    // Metadata-only change: no generation bump.
    let l = api
        .patch(
            &format!("{EPS}/p"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await
        .body;
    assert_eq!(l["metadata"]["generation"], 2);
    assert_ne!(rv(&l), rv(&m));
}

#[tokio::test]
async fn finalizers_keep_a_deleted_object_until_the_last_one_is_removed() {
    let (_emu, api) = start().await;
    let mut s = secret("f");
    s["metadata"]["finalizers"] = json!(["a/b", "c/d"]);
    api.post(SECRETS, &s).await;
    let d = api.delete(&format!("{SECRETS}/f")).await;
    assert_eq!(d.code, 200);
    assert!(d.body["metadata"]["deletionTimestamp"].is_string());
    let r = api
        .patch(
            &format!("{SECRETS}/f"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": ["c/d"]}}),
        )
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(api.get(&format!("{SECRETS}/f")).await.code, 200);
    let r = api
        .patch(
            &format!("{SECRETS}/f"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(api.get(&format!("{SECRETS}/f")).await.code, 404);
}

#[tokio::test]
async fn delete_without_finalizers_removes_and_answers_success_status() {
    let (_emu, api) = start().await;
    api.post(SECRETS, &secret("a")).await;
    let d = api.delete(&format!("{SECRETS}/a")).await;
    assert_eq!(d.code, 200);
    assert_eq!(d.body["status"], "Success");
    assert_eq!(api.delete(&format!("{SECRETS}/a")).await.code, 404);
}

#[tokio::test]
async fn new_namespace_gets_a_default_service_account_and_deleting_it_deletes_its_objects() {
    let (emu, api) = start().await;
    assert_eq!(
        api.post("/api/v1/namespaces", &json!({"metadata": {"name": "team"}}))
            .await
            .code,
        201
    );
    assert!(emu
        .get("serviceaccounts", Some("team"), "default")
        .is_some());
    api.post("/api/v1/namespaces/team/secrets", &secret("a"))
        .await;
    assert_eq!(api.delete("/api/v1/namespaces/team").await.code, 200);
    assert!(emu.get("secrets", Some("team"), "a").is_none());
    assert!(emu.get("namespaces", None, "team").is_none());
    let r = api.delete("/api/v1/namespaces/default").await;
    assert_eq!(r.code, 403);
    assert_eq!(
        r.body["message"],
        "namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    // A namespace held by a finalizer stays Terminating and refuses new content.
    api.post(
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "held", "finalizers": ["x/y"]}}),
    )
    .await;
    api.delete("/api/v1/namespaces/held").await;
    let r = api
        .post("/api/v1/namespaces/held/secrets", &secret("a"))
        .await;
    assert_eq!(r.code, 403);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .ends_with("because it is being terminated"));
}

#[tokio::test]
async fn invalid_names_are_422_invalid() {
    let (_emu, api) = start().await;
    let r = api.post(SECRETS, &secret("Bad_Name")).await;
    assert_eq!(r.code, 422);
    assert_eq!(r.body["reason"], "Invalid");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Secret \"Bad_Name\" is invalid: metadata.name: Invalid value"));
}

#[tokio::test]
async fn dockerconfigjson_secrets_need_valid_json_and_their_type_is_immutable() {
    let (_emu, api) = start().await;
    let missing =
        json!({"metadata": {"name": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {}});
    let r = api.post(SECRETS, &missing).await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["message"],
        "Secret \"d\" is invalid: data[.dockerconfigjson]: Required value"
    );
    let not_json = json!({"metadata": {"name": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}});
    assert_eq!(api.post(SECRETS, &not_json).await.code, 422);
    let not_b64 = json!({"metadata": {"name": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "***"}});
    assert_eq!(api.post(SECRETS, &not_b64).await.code, 400);
    let good = json!({"metadata": {"name": "d"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}});
    let c = api.post(SECRETS, &good).await;
    assert_eq!(c.code, 201);
    assert!(c.body.get("stringData").is_none());
    let r = api
        .patch(
            &format!("{SECRETS}/d"),
            "application/merge-patch+json",
            &json!({"type": "Opaque"}),
        )
        .await;
    assert_eq!(r.code, 422);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("type: Invalid value: \"Opaque\": field is immutable"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_like_the_real_server() {
    let (_emu, api) = start().await;
    assert_eq!(api.get("/api/v1/namespaces/default/pods").await.code, 404);
    assert_eq!(
        api.call(
            "POST",
            &format!("{SECRETS}/x"),
            Some("application/json"),
            Some(&json!({}))
        )
        .await
        .code,
        405
    );
    assert_eq!(api.get("/version").await.code, 200);
    let r = api
        .post(
            "/api/v1/secrets",
            &json!({"metadata": {"name": "a", "namespace": "default"}}),
        )
        .await;
    assert_eq!(r.code, 405, "create needs the namespaced collection");
}

fn owned_secret(name: &str, owner_uid: &str) -> Value {
    json!({"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "ecr.creds.dev/v1alpha1", "kind": "ECRPullSecret", "name": "p", "uid": owner_uid
    }]}})
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents_across_scopes() {
    let (emu, api) = start().await;
    let owner = api
        .post(EPS, &json!({"metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["default"]}}))
        .await
        .body;
    let uid = owner["metadata"]["uid"].as_str().unwrap();
    assert_eq!(api.post(SECRETS, &owned_secret("dep", uid)).await.code, 201);
    assert!(
        emu.get("secrets", Some("default"), "dep").is_some(),
        "a live owner keeps it"
    );
    api.delete(&format!("{EPS}/p")).await;
    assert!(emu.get("secrets", Some("default"), "dep").is_none());
}

#[tokio::test]
async fn dependent_whose_owner_uid_does_not_match_is_collected() {
    let (emu, api) = start().await;
    api.post(
        EPS,
        &json!({"metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["default"]}}),
    )
    .await;
    let r = api
        .post(
            SECRETS,
            &owned_secret("dep", "00000000-0000-4000-8000-000000000000"),
        )
        .await;
    assert_eq!(r.code, 201);
    assert!(emu.get("secrets", Some("default"), "dep").is_none());
    // An owner of a kind the server does not serve is left alone.
    let unknown = json!({"metadata": {"name": "keep", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u"}]}});
    api.post(SECRETS, &unknown).await;
    assert!(emu.get("secrets", Some("default"), "keep").is_some());
}

#[tokio::test]
async fn invalid_labels_and_owner_references_are_422() {
    let (_emu, api) = start().await;
    let r = api
        .post(
            SECRETS,
            &json!({"metadata": {"name": "a", "labels": {"k": "not valid"}}}),
        )
        .await;
    assert_eq!(r.code, 422);
    let r = api.post(SECRETS, &json!({"metadata": {"name": "a", "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n"}]}})).await;
    assert_eq!(r.code, 422);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("metadata.ownerReferences.uid"));
}

#[tokio::test]
async fn custom_resources_are_pruned_defaulted_and_validated_by_the_shipped_crd_schema() {
    let (_emu, api) = start().await;
    let c = api
        .post(EPS, &json!({"metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["a*"], "unknownField": 1}}))
        .await;
    assert_eq!(c.code, 201);
    assert!(
        c.body["spec"].get("unknownField").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(
        c.body["spec"]["serviceAccounts"],
        json!(["default"]),
        "defaults applied"
    );
    assert_eq!(c.body["spec"]["deletionPolicy"], "Retain");
    let s = api
        .patch(
            &format!("{EPS}/p/status"),
            "application/merge-patch+json",
            &json!({"status": {"syncedNamespaces": 1, "madeUp": true}}),
        )
        .await;
    assert_eq!(s.code, 200);
    assert!(
        s.body["status"].get("madeUp").is_none(),
        "unknown status fields are pruned too"
    );
    let bad_time = api
        .patch(
            &format!("{EPS}/p/status"),
            "application/merge-patch+json",
            &json!({"status": {"expiresAt": "tomorrow"}}),
        )
        .await;
    assert_eq!(bad_time.code, 422);
    let r = api
        .post(
            EPS,
            &json!({"metadata": {"name": "q"}, "spec": {"namespaces": ["x"]}}),
        )
        .await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["message"],
        "ECRPullSecret.ecr.creds.dev \"q\" is invalid: spec.secretName: Required value"
    );
    let r = api
        .post(
            EPS,
            &json!({"metadata": {"name": "q"}, "spec": {"secretName": "s"}}),
        )
        .await;
    assert_eq!(r.code, 422);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("set namespaces and/or namespaceSelector"));
    let r = api
        .post(EPS, &json!({"metadata": {"name": "q"}, "spec": {"secretName": "S!", "namespaces": ["x"], "deletionPolicy": "Nope"}}))
        .await;
    assert_eq!(r.code, 422);
    let causes = r.body["details"]["causes"].as_array().unwrap();
    let mut fields: Vec<(&str, &str)> = causes
        .iter()
        .map(|c| (c["field"].as_str().unwrap(), c["reason"].as_str().unwrap()))
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("spec.deletionPolicy", "FieldValueNotSupported"),
            ("spec.secretName", "FieldValueInvalid")
        ]
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_and_needs_a_field_manager() {
    let (_emu, api) = start().await;
    let raw = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: applied\n  labels:\n    a: b\nstringData:\n  k: v\n";
    let send = |q: &'static str| {
        api.call_raw(
            "PATCH",
            format!("{SECRETS}/applied{q}"),
            "application/apply-patch+yaml",
            raw.as_bytes().to_vec(),
        )
    };
    let r = send("").await;
    assert_eq!(r.code, 422);
    let r = send("?fieldManager=test").await;
    assert_eq!(r.code, 201);
    assert_eq!(r.body["data"]["k"], "dg==");
    let again = send("?fieldManager=test").await;
    assert_eq!(again.code, 200);
    assert_eq!(
        again.body["metadata"]["resourceVersion"], r.body["metadata"]["resourceVersion"],
        "no-op apply"
    );
}

#[tokio::test]
async fn create_with_a_resource_version_is_refused_by_storage_with_500() {
    let (_emu, api) = start().await;
    let r = api
        .post(
            SECRETS,
            &json!({"metadata": {"name": "copied", "resourceVersion": "42"}}),
        )
        .await;
    assert_eq!(r.code, 500);
    assert_eq!(
        r.body["message"],
        "resourceVersion should not be set on objects to be created"
    );
    assert!(r.body.get("reason").is_none());
    // An unparsable one slips through, as on the real server.
    let r = api
        .post(
            SECRETS,
            &json!({"metadata": {"name": "odd", "resourceVersion": "-1"}}),
        )
        .await;
    assert_eq!(r.code, 201);
}

#[tokio::test]
async fn custom_resources_refuse_unconditional_replace() {
    let (_emu, api) = start().await;
    let c = api.post(EPS, &eps("p")).await.body;
    let mut body = c.clone();
    body["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let r = api.put(&format!("{EPS}/p"), &body).await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["message"],
        "ecrpullsecrets.ecr.creds.dev \"p\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
    assert_eq!(api.put(&format!("{EPS}/p"), &c).await.code, 200);
}

#[tokio::test]
async fn continue_pages_through_a_snapshot_at_the_first_pages_resource_version() {
    let (_emu, api) = start().await;
    for n in ["a", "b", "c", "d"] {
        api.post(SECRETS, &secret(n)).await;
    }
    let first = api.get(&format!("{SECRETS}?limit=2")).await.body;
    let c = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Between pages: one deleted, one created, one modified, all after the cursor.
    api.delete(&format!("{SECRETS}/c")).await;
    api.post(SECRETS, &secret("e")).await;
    api.patch(
        &format!("{SECRETS}/d"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"late": "1"}}}),
    )
    .await;
    let second = api
        .get(&format!("{SECRETS}?limit=5&continue={c}"))
        .await
        .body;
    let names: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["c", "d"],
        "the list is consistent at its resourceVersion"
    );
    assert!(second["items"][1]["metadata"]["labels"]
        .get("late")
        .is_none());
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
}

/// The server counts what crossed its sockets (the bench's traffic figures): a write of a
/// 12 KB Secret adds at least its body to the bytes received and its whole-object answer
/// to the bytes sent.
#[tokio::test]
async fn traffic_counts_every_byte_a_write_and_its_answer_carry() {
    let (emu, api) = start().await;
    let (received, sent) = emu.traffic_bytes();
    let big = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"},
        "data": {"k": "A".repeat(12_000)}});
    let body_len = serde_json::to_vec(&big).unwrap().len() as u64;
    let r = api.post(SECRETS, &big).await;
    assert_eq!(r.code, 201);
    let answer_len = serde_json::to_vec(&r.body).unwrap().len() as u64;
    let (received_after, sent_after) = emu.traffic_bytes();
    assert!(
        received_after - received >= body_len,
        "{received} -> {received_after}, body {body_len}"
    );
    assert!(
        sent_after - sent >= answer_len,
        "{sent} -> {sent_after}, answer {answer_len}"
    );
    // Headers and framing only on top: not a second copy.
    assert!(received_after - received < 2 * body_len);
}
