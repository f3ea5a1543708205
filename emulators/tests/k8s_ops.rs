//! Operational behaviour: auth and token rotation, fault injection, restart, TLS (http1 and
//! h2), the request log, the standalone binary, and a throughput sanity print.

mod k8s_support;

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use emulators::k8s::{EmulatorConfig, FaultConfig, K8sEmulator};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_support::{admin_config, ev, Api};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

async fn start() -> (K8sEmulator, Api) {
    let emu = K8sEmulator::start(admin_config()).await.unwrap();
    let api = Api::new(emu.addr());
    (emu, api)
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_and_the_token_can_rotate_at_runtime() {
    let emu = K8sEmulator::start(EmulatorConfig {
        token: Some("one".into()),
        ..admin_config()
    })
    .await
    .unwrap();
    let mut api = Api::new(emu.addr());
    let r = api.get(SECRETS).await;
    assert_eq!(r.code, 401);
    assert_eq!(r.body["reason"], "Unauthorized");
    assert_eq!(r.body["kind"], "Status");
    api.token = Some("one".into());
    assert_eq!(api.get(SECRETS).await.code, 200);
    emu.set_token(Some("two".into()));
    assert_eq!(api.get(SECRETS).await.code, 401);
    api.token = Some("two".into());
    assert_eq!(api.get(SECRETS).await.code, 200);
    // Rotation over HTTP, for the standalone binary.
    api.post("/_emulator/token", &json!({"token": "three"}))
        .await;
    assert_eq!(api.get(SECRETS).await.code, 401);
}

#[tokio::test]
async fn every_nth_fault_answers_503_with_retry_after_and_only_for_chosen_verbs() {
    let (emu, api) = start().await;
    emu.faults().set(FaultConfig {
        error_code: Some(503),
        every_nth: Some(2),
        retry_after_secs: Some(1),
        verbs: vec!["list".into()],
        ..Default::default()
    });
    let codes: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(api.get(SECRETS).await.code);
        }
        v
    };
    assert_eq!(codes, [200, 503, 200, 503]);
    let r = api.get(SECRETS).await;
    let r = if r.code == 503 {
        r
    } else {
        api.get(SECRETS).await
    };
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    assert_eq!(r.body["reason"], "ServiceUnavailable");
    assert_eq!(
        api.get(&format!("{SECRETS}/x")).await.code,
        404,
        "gets are untouched"
    );
    assert!(emu.faults().injected() >= 2);
}

#[tokio::test]
async fn faults_and_latency_can_be_set_over_http() {
    let (_emu, api) = start().await;
    let r = api
        .post(
            "/_emulator/faults",
            &json!({"error_code": 429, "every_nth": 1, "retry_after_secs": 0, "max_errors": 1}),
        )
        .await;
    assert_eq!(r.code, 200);
    let r = api.get(SECRETS).await;
    assert_eq!(r.code, 429);
    assert_eq!(r.headers.get("retry-after").unwrap(), "0");
    assert_eq!(api.get(SECRETS).await.code, 200, "max_errors reached");
    api.post("/_emulator/faults", &json!({"latency_ms": 150}))
        .await;
    let t = Instant::now();
    assert_eq!(api.get(SECRETS).await.code, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    api.call("DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(api.get("/_emulator/faults").await.body["latency_ms"], 0);
}

#[tokio::test]
async fn restart_cuts_connections_and_watches_but_keeps_state_and_port() {
    let (emu, api) = start().await;
    api.post(SECRETS, &json!({"metadata": {"name": "kept"}}))
        .await;
    let rv = emu.resource_version();
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&resourceVersion={rv}"))
        .await;
    let restart = emu.restart_with_refusal(Duration::from_millis(300));
    let probe = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::net::TcpStream::connect(emu.addr()).await.is_err()
    };
    let (res, refused) = tokio::join!(restart, probe);
    res.unwrap();
    assert!(refused, "connections are refused during the restart");
    assert!(
        w.next_within(Duration::from_secs(5)).await.is_none(),
        "watch was cut"
    );
    assert_eq!(api.get(&format!("{SECRETS}/kept")).await.code, 200);
    // Watches resume from the old resourceVersion.
    let mut w = api
        .watch(&format!("{SECRETS}?watch=1&resourceVersion={rv}"))
        .await;
    api.post(SECRETS, &json!({"metadata": {"name": "after"}}))
        .await;
    assert_eq!(ev(&w.next_change().await.unwrap()).1, "after");
    // And over HTTP.
    assert_eq!(
        api.post("/_emulator/restart", &json!({"refuse_ms": 50}))
            .await
            .code,
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.get(&format!("{SECRETS}/kept")).await.code, 200);
}

#[tokio::test]
async fn request_log_classifies_verbs_and_lists_rbac_uses() {
    let (emu, api) = start().await;
    emu.clear_requests();
    api.post(SECRETS, &json!({"metadata": {"name": "a"}})).await;
    api.get(&format!("{SECRETS}/a")).await;
    api.get("/api/v1/secrets").await;
    api.patch(
        &format!("{SECRETS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await;
    api.post(
        "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets",
        &json!({"metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["default"]}}),
    )
    .await;
    api.call(
        "PUT",
        "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets/p/status",
        Some("application/json"),
        Some(&json!({"metadata": {"name": "p"}, "status": {}})),
    )
    .await;
    let mut w = api
        .watch("/api/v1/namespaces?watch=1&timeoutSeconds=1")
        .await;
    while w.next_within(Duration::from_secs(5)).await.is_some() {}
    let log = emu.requests();
    let verbs: Vec<&str> = log.iter().map(|r| r.verb.as_str()).collect();
    assert_eq!(
        verbs,
        ["create", "get", "list", "patch", "create", "update", "watch"]
    );
    assert_eq!(log[2].namespace, None);
    assert_eq!(log[1].namespace.as_deref(), Some("default"));
    assert_eq!(log[0].code, 201);
    assert_eq!(emu.count("create", "secrets"), 1);
    let rules: Vec<(String, String, bool)> = emu
        .rbac_used()
        .into_iter()
        .map(|r| (r.verb, r.resource, r.namespaced))
        .collect();
    assert!(rules.contains(&("update".into(), "ecrpullsecrets/status".into(), false)));
    assert!(rules.contains(&("list".into(), "secrets".into(), false)));
    assert!(rules.contains(&("get".into(), "secrets".into(), true)));
    let over_http = api.get("/_emulator/requests").await.body;
    assert_eq!(over_http.as_array().unwrap().len(), 7);
}

fn tls_client(ca_pem: &str, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn tls_serves_http1_and_h2_with_a_certificate_from_the_exposed_ca() {
    let emu = K8sEmulator::start(EmulatorConfig {
        tls: true,
        ..admin_config()
    })
    .await
    .unwrap();
    assert!(emu.url().starts_with("https://127.0.0.1:"));
    let ca = emu.ca_pem().unwrap();
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let tcp = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
        let tls = tls_client(&ca, alpn)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let req = hyper::Request::get(format!(
            "https://localhost:{}/api/v1/namespaces/default",
            emu.addr().port()
        ))
        .body(Empty::<Bytes>::new())
        .unwrap();
        let resp = if alpn == b"h2" {
            let (mut s, c) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(c);
            s.send_request(req).await.unwrap()
        } else {
            let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(c);
            s.send_request(req).await.unwrap()
        };
        assert_eq!(resp.status(), 200);
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["metadata"]["name"], "default");
    }
    // A client without the CA is refused.
    let tcp = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    let other = K8sEmulator::start(EmulatorConfig {
        tls: true,
        ..admin_config()
    })
    .await
    .unwrap();
    let wrong = tls_client(&other.ca_pem().unwrap(), b"http/1.1");
    assert!(wrong
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .is_err());
}

#[tokio::test]
async fn direct_api_changes_are_seen_by_watchers() {
    let (emu, api) = start().await;
    let mut w = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={}",
            emu.resource_version()
        ))
        .await;
    emu.apply(
        "secrets",
        json!({"metadata": {"name": "d", "namespace": "default"}, "stringData": {"a": "b"}}),
    )
    .unwrap();
    emu.apply(
        "ecrpullsecrets",
        json!({"metadata": {"name": "p"}, "spec": {"secretName": "s", "namespaces": ["*"]}, "status": {"syncedNamespaces": 7}}),
    )
    .unwrap();
    assert_eq!(
        emu.get("ecrpullsecrets", None, "p").unwrap()["status"]["syncedNamespaces"],
        7,
        "direct apply keeps status"
    );
    assert_eq!(
        ev(&w.next_change().await.unwrap()),
        ("ADDED".into(), "d".into())
    );
    emu.delete("secrets", Some("default"), "d").unwrap();
    assert_eq!(
        ev(&w.next_change().await.unwrap()),
        ("DELETED".into(), "d".into())
    );
    assert_eq!(
        emu.list("serviceaccounts", None).len(),
        3,
        "default SA in each initial namespace"
    );
}

#[test]
fn standalone_binary_prints_its_url_first_and_serves() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_k8s-emulator"))
        .args(["--port", "0", "--history", "50"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("first line")
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = rt.block_on(async {
        Api::new(url.parse().unwrap())
            .get("/api/v1/namespaces")
            .await
            .code
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_sanity_prints_requests_per_second() {
    let (emu, _api) = start().await;
    emu.apply(
        "secrets",
        json!({"metadata": {"name": "hot", "namespace": "default"}}),
    )
    .unwrap();
    let addr = emu.addr();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(c);
            for _ in 0..250 {
                let req = hyper::Request::get(format!("{SECRETS}/hot"))
                    .header("host", "x")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let resp = s.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = 8 * 250;
    println!(
        "k8s emulator: {n} GETs in {:?} = {:.0} req/s",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    assert_eq!(emu.count("get", "secrets"), n);

    // Writes with two watchers fanning out every event.
    let api = Api::new(addr);
    let rv = emu.resource_version();
    let mut w1 = api
        .watch(&format!("/api/v1/secrets?watch=1&resourceVersion={rv}"))
        .await;
    let mut w2 = api
        .watch(&format!(
            "{SECRETS}?watch=1&resourceVersion={rv}&labelSelector=bench"
        ))
        .await;
    let writes = 1000;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..4 {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            for i in 0..writes / 4 {
                let body =
                    json!({"metadata": {"name": format!("b{c}-{i}"), "labels": {"bench": "1"}}});
                let req = hyper::Request::post(SECRETS)
                    .header("host", "x")
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                let resp = s.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 201);
                resp.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..writes {
        assert_eq!(w1.next_change().await.unwrap()["type"], "ADDED");
        assert_eq!(w2.next_change().await.unwrap()["type"], "ADDED");
    }
    println!(
        "k8s emulator: {writes} creates seen by 2 watchers in {:?} = {:.0} writes/s",
        t.elapsed(),
        writes as f64 / t.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn rbac_policy_answers_403_forbidden_for_anything_not_granted() {
    let (emu, api) = start().await;
    let mut policy = emulators::k8s::RbacPolicy {
        user: "system:serviceaccount:ecr:op".into(),
        rules: vec![],
    };
    policy
        .add_role_yaml(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: op}\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list, watch, create]\n- apiGroups: [ecr.creds.dev]\n  resources: [ecrpullsecrets/status]\n  verbs: [patch]\n",
            None,
        )
        .unwrap();
    emu.set_rbac(Some(policy));
    assert_eq!(
        api.post(SECRETS, &json!({"metadata": {"name": "a"}}))
            .await
            .code,
        201
    );
    assert_eq!(api.get("/api/v1/secrets").await.code, 200);
    let r = api.delete(&format!("{SECRETS}/a")).await;
    assert_eq!(r.code, 403);
    assert_eq!(r.body["reason"], "Forbidden");
    assert_eq!(
        r.body["message"],
        "secrets \"a\" is forbidden: User \"system:serviceaccount:ecr:op\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    let r = api
        .patch(
            "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets/p",
            "application/merge-patch+json",
            &json!({}),
        )
        .await;
    assert_eq!(
        r.code, 403,
        "the status grant does not cover the main resource"
    );
    assert!(emu.get("secrets", Some("default"), "a").is_some());
    // Over HTTP: turned off again.
    api.call("DELETE", "/_emulator/rbac", None, None).await;
    assert_eq!(api.delete(&format!("{SECRETS}/a")).await.code, 200);
    assert!(emu
        .requests()
        .iter()
        .any(|r| r.code == 403 && r.verb == "delete"));
}

#[tokio::test]
async fn wait_for_wakes_on_the_change_and_changes_since_lists_writes() {
    let (emu, api) = start().await;
    let rv = emu.resource_version();
    let waiter = emu.wait_for(
        "secrets",
        Some("default"),
        "w",
        Duration::from_secs(5),
        |o| o.is_some_and(|o| o["metadata"]["labels"]["ready"] == "yes"),
    );
    let writer = async {
        api.post(SECRETS, &json!({"metadata": {"name": "w"}})).await;
        api.patch(
            &format!("{SECRETS}/w"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"ready": "yes"}}}),
        )
        .await;
    };
    let (got, ()) = tokio::join!(waiter, writer);
    assert_eq!(got.unwrap().unwrap()["metadata"]["name"], "w");
    let changes = emu.changes_since(rv).unwrap();
    let summary: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| (c.event, c.resource.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        summary,
        [("ADDED", "secrets", "w"), ("MODIFIED", "secrets", "w")]
    );
    let timed_out = emu
        .wait_for(
            "secrets",
            Some("default"),
            "never",
            Duration::from_millis(50),
            |o| o.is_some(),
        )
        .await;
    assert_eq!(timed_out, Err(None));
    emu.compact();
    assert!(emu.changes_since(rv).is_none());
}
