//! The admin server over real loopback sockets: probes, metrics, separate listeners and
//! shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::admin::{self, Readiness, Routes, Server};
use crate::metrics;
use bytes::Bytes;
use emulators::client::get;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

async fn start(routes: Routes) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(routes, async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

#[tokio::test]
async fn readyz_turns_200_only_after_every_component_reports_ready() {
    let readiness = Readiness::new();
    let caches = readiness.register("caches");
    let leader = readiness.register("leader-election");
    let (addr, stop, task) = start(Routes::probes(readiness.clone())).await;

    let health = get(addr, "/healthz").await.unwrap();
    assert_eq!(health.status, 200);

    let not_ready = get(addr, "/readyz").await.unwrap();
    assert_eq!(not_ready.status, 503);
    assert!(not_ready.text().contains("caches"), "{}", not_ready.text());
    assert!(
        not_ready.text().contains("leader-election"),
        "{}",
        not_ready.text()
    );

    caches.set_ready(true);
    let half = get(addr, "/readyz").await.unwrap();
    assert_eq!(half.status, 503);
    assert!(
        half.text().contains("readyz check failed: leader-election"),
        "{}",
        half.text()
    );

    leader.set_ready(true);
    let ready = get(addr, "/readyz").await.unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (200, "ok\n"));

    let verbose = get(addr, "/readyz?verbose").await.unwrap();
    assert_eq!(verbose.status, 200);
    assert!(
        verbose.text().contains("[+]caches ok"),
        "{}",
        verbose.text()
    );

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn metrics_listener_serves_its_registry_in_prometheus_text() {
    let registry = metrics::Metrics::default();
    registry.secret_written("admin-test-op");
    let shown = registry.clone();
    let (metrics_addr, stop_m, task_m) = start(Routes::metrics_from(move || shown.render())).await;
    let (probe_addr, stop_p, task_p) = start(Routes::probes(Readiness::new())).await;

    let m = get(metrics_addr, "/metrics").await.unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.content_type().starts_with("text/plain; version=0.0.4"),
        "{}",
        m.content_type()
    );
    assert!(
        m.text()
            .contains("ecr_creds_refresher_secret_writes_total{op=\"admin-test-op\"} 1"),
        "{}",
        m.text()
    );
    assert!(m
        .text()
        .contains("# TYPE ecr_creds_refresher_secret_writes_total counter"));

    // Each listener serves only its own routes.
    assert_eq!(get(metrics_addr, "/healthz").await.unwrap().status, 404);
    assert_eq!(get(probe_addr, "/metrics").await.unwrap().status, 404);

    stop_m.send(()).unwrap();
    stop_p.send(()).unwrap();
    task_m.await.unwrap();
    task_p.await.unwrap();
}

/// A scrape of many series: far more than the 8 KiB the server allows a request head.
fn large_exposition() -> String {
    (0..20_000).map(|i| format!("series_{i} {i}\n")).collect()
}

#[tokio::test]
async fn request_heads_are_bounded_but_large_answers_are_served_whole() {
    let (addr, stop, task) = start(Routes::metrics_from(large_exposition)).await;
    let m = get(addr, "/metrics").await.unwrap();
    assert_eq!(m.status, 200);
    assert_eq!(m.text(), large_exposition());

    // A 9 KiB header is refused (431) and the connection closed; the next request works.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(get(addr, "/metrics").await.unwrap().status, 200);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_keepalive_connections() {
    let (addr, stop, task) = start(Routes::probes(Readiness::new())).await;

    // An idle keep-alive connection, as Prometheus or the kubelet would leave open.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn_task = tokio::spawn(conn);
    let req = http::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);

    stop.send(()).unwrap();
    // The server returns well before its grace period because the idle connection is
    // closed gracefully rather than waited on.
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), conn_task)
        .await
        .expect("idle connection was not closed")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still accepting"
    );
}

#[tokio::test]
async fn binding_a_taken_port_fails_with_an_error_naming_the_address() {
    let first = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr().unwrap();
    let err = match Server::bind(addr).await {
        Ok(_) => panic!("second bind on {addr} succeeded"),
        Err(e) => e,
    };
    assert!(matches!(err, admin::AdminError::Bind { .. }));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// Hardening finding 7: 64 idle connections closed /healthz without an answer, so the kubelet
/// restarted the pod. A flood now only ever closes the flooder's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_7_idle_connections_cannot_starve_the_probes() {
    let readiness = Readiness::new();
    let handle = readiness.register("test");
    handle.set_ready(true);
    let server = Server::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .await
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(Routes::probes(readiness), async {
        let _ = stopped.await;
    }));
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 0))
            .unwrap();
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
    };
    // An attacker holds idle connections: 100 from one address, then one each from 300
    // more, past the listener's budget of 256.
    let mut idle = Vec::new();
    for i in 0..400u32 {
        let ip = if i < 100 {
            [127, 0, 0, 1]
        } else {
            let n = i - 100;
            [127, 1, (n / 250) as u8, (n % 250) as u8 + 1]
        };
        if let Ok(s) = from(ip).await {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 390, "the flood did not connect");
    // The kubelet (another address) and a probe from the flooder's own address.
    for ip in [[127, 0, 0, 2], [127, 0, 0, 1]] {
        let mut s = from(ip).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
            .await
            .expect("answered in time")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{ip:?}: {answer:?}");
    }
    let _ = stop.send(());
    let _ = serving.await;
    drop(handle);
}
