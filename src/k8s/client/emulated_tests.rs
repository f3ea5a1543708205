//! The Kubernetes client against the in-repo API server emulator on loopback: retries
//! after Retry-After, token-file rotation, failing closed on a wrong CA or token, HTTP/2
//! over TLS, and HTTP/2 keep-alive against a server gone silent.

use std::time::{Duration, Instant};

use crate::k8s::auth::{parse_ca, TokenSource};
use crate::k8s::kind::NAMESPACES;
use crate::k8s::types::Namespace;
use crate::k8s::{Client, ClientConfig, Error, ListParams};
use emulators::k8s::{EmulatorConfig, FaultConfig, K8sEmulator};

fn client(emu: &K8sEmulator) -> Client {
    Client::new(ClientConfig::new(&emu.url()).unwrap()).unwrap()
}

fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("k8s-client-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test]
async fn answers_429_and_503_are_retried_after_retry_after() {
    let emu = K8sEmulator::start(EmulatorConfig::default()).await.unwrap();
    let c = client(&emu);
    for code in [429u16, 503] {
        emu.faults().set(FaultConfig {
            error_code: Some(code),
            every_nth: Some(1),
            retry_after_secs: Some(1),
            max_errors: Some(2),
            ..Default::default()
        });
        let started = Instant::now();
        let ns: Namespace = c.get(&NAMESPACES.object(None, "default")).await.unwrap();
        assert_eq!(ns.metadata.name.as_deref(), Some("default"));
        // Two refusals, each with Retry-After: 1.
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{code}: waited {:?}",
            started.elapsed()
        );
        let refused = emu.requests().iter().filter(|r| r.code == code).count();
        assert_eq!(refused, 2, "{code}: both refusals reached the server");
        emu.clear_requests();
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn retries_give_up_with_the_servers_status() {
    let emu = K8sEmulator::start(EmulatorConfig::default()).await.unwrap();
    let mut cfg = ClientConfig::new(&emu.url()).unwrap();
    cfg.max_retries = 2;
    let c = Client::new(cfg).unwrap();
    emu.faults().set(FaultConfig {
        error_code: Some(503),
        every_nth: Some(1),
        retry_after_secs: Some(0),
        ..Default::default()
    });
    let err = c
        .get::<Namespace>(&NAMESPACES.object(None, "default"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(503));
    assert!(err.is_transient());
    assert_eq!(emu.requests().len(), 3, "one try and two retries");
    emu.shutdown().await;
}

#[tokio::test]
async fn rotated_token_file_is_picked_up_without_a_restart() {
    let emu = K8sEmulator::start(EmulatorConfig {
        token: Some("first-token".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let path = temp_file("token", "first-token\n");
    let mut cfg = ClientConfig::new(&emu.url()).unwrap();
    cfg.token = Some(TokenSource::from_file(&path).unwrap());
    let c = Client::new(cfg).unwrap();
    c.get::<Namespace>(&NAMESPACES.object(None, "default"))
        .await
        .unwrap();

    // The kubelet rotates the token: the server takes only the new one now.
    std::fs::write(&path, "second-token\n").unwrap();
    emu.set_token(Some("second-token".into()));
    c.get::<Namespace>(&NAMESPACES.object(None, "default"))
        .await
        .unwrap();
    let codes: Vec<u16> = emu.requests().iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![200, 401, 200], "one 401, re-read, then success");
    emu.shutdown().await;
}

#[tokio::test]
async fn wrong_token_fails_closed_with_the_status() {
    let emu = K8sEmulator::start(EmulatorConfig {
        token: Some("right".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cfg = ClientConfig::new(&emu.url()).unwrap();
    cfg.token = Some(TokenSource::fixed("wrong"));
    let err = Client::new(cfg)
        .unwrap()
        .get::<Namespace>(&NAMESPACES.object(None, "default"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(401));
    let text = err.to_string();
    assert!(text.contains("401") && !text.contains("wrong"), "{text}");
    emu.shutdown().await;
}

#[tokio::test]
async fn wrong_ca_fails_closed_and_the_right_one_works() {
    let emu = K8sEmulator::start(EmulatorConfig {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(emu.url().starts_with("https://"));
    let other = K8sEmulator::start(EmulatorConfig {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();

    let mut wrong = ClientConfig::new(&emu.url()).unwrap();
    wrong.ca = Some(parse_ca(other.ca_pem().unwrap().as_bytes()).unwrap());
    let err = Client::new(wrong)
        .unwrap()
        .get::<Namespace>(&NAMESPACES.object(None, "default"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "the message names the certificate problem: {err}"
    );
    assert!(
        emu.requests().is_empty(),
        "nothing was sent over the unverified connection"
    );

    let mut right = ClientConfig::new(&emu.url()).unwrap();
    right.ca = Some(parse_ca(emu.ca_pem().unwrap().as_bytes()).unwrap());
    let ns: Namespace = Client::new(right)
        .unwrap()
        .get(&NAMESPACES.object(None, "default"))
        .await
        .unwrap();
    assert_eq!(ns.metadata.name.as_deref(), Some("default"));
    emu.shutdown().await;
    other.shutdown().await;
}

/// Over TLS the client takes the HTTP/2 the API server offers (one connection for every
/// request, as client-go); over plain http (`kubectl proxy`) it speaks HTTP/1.1.
#[tokio::test]
async fn tls_speaks_http2_and_plain_http_speaks_http1() {
    for tls in [true, false] {
        let emu = K8sEmulator::start(EmulatorConfig {
            tls,
            ..Default::default()
        })
        .await
        .unwrap();
        let mut cfg = ClientConfig::new(&emu.url()).unwrap();
        cfg.ca = emu.ca_pem().map(|pem| parse_ca(pem.as_bytes()).unwrap());
        let c = Client::new(cfg).unwrap();
        for _ in 0..3 {
            let _: Namespace = c.get(&NAMESPACES.object(None, "default")).await.unwrap();
        }
        let expected = if tls { 3 } else { 0 };
        assert_eq!(emu.http2_requests(), expected, "tls: {tls}");
        emu.shutdown().await;
    }
}

/// A TLS emulator and a client that pings an HTTP/2 connection silent for 200 ms and gives
/// it 300 ms to answer; requests time out only after 20 s.
async fn pinging_client() -> (K8sEmulator, Client) {
    let emu = K8sEmulator::start(EmulatorConfig {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cfg = ClientConfig::new(&emu.url()).unwrap();
    cfg.ca = emu.ca_pem().map(|pem| parse_ca(pem.as_bytes()).unwrap());
    cfg.h2_ping_interval = Duration::from_millis(200);
    cfg.h2_ping_timeout = Duration::from_millis(300);
    cfg.request_timeout = Duration::from_secs(20);
    let c = Client::new(cfg).unwrap();
    let _: Namespace = c.get(&NAMESPACES.object(None, "default")).await.unwrap();
    assert_eq!(emu.http2_requests(), 1);
    assert_eq!(emu.open_connections(), 1);
    (emu, c)
}

/// The server of an idle HTTP/2 connection goes silent without closing it (a dead node, a
/// dropped NAT entry): the unanswered PING closes it, and the next request goes out on a
/// new connection at once instead of waiting out its timeout on the dead one.
#[tokio::test]
async fn an_idle_http2_connection_whose_server_went_silent_is_replaced() {
    let (emu, c) = pinging_client().await;
    emu.freeze_connections();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = Instant::now();
    let _: Namespace = c.get(&NAMESPACES.object(None, "default")).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The frozen connection, still held open by the server, and the new one.
    assert_eq!(emu.open_connections(), 2);
    assert_eq!(emu.http2_requests(), 2);
    emu.shutdown().await;
}

/// A request in flight when the server goes silent fails within the PING's timeout, not
/// the request's 20 s; the one after it succeeds on a new connection.
#[tokio::test]
async fn a_request_on_an_http2_connection_that_went_silent_fails_fast() {
    let (emu, c) = pinging_client().await;
    emu.freeze_connections();
    let t0 = Instant::now();
    let err = c
        .get::<Namespace>(&NAMESPACES.object(None, "default"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let _: Namespace = c.get(&NAMESPACES.object(None, "default")).await.unwrap();
    assert_eq!(emu.open_connections(), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn unreachable_server_fails_with_an_actionable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = Client::new(ClientConfig::new(&format!("http://{addr}")).unwrap()).unwrap();
    let err = c
        .list::<Namespace>(&NAMESPACES.collection(None), &ListParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot reach the API server"),
        "{err}"
    );
}
