//! High availability of the shipped binary: two `ecr-creds-refresher` processes with
//! `--leader-elect` against the Kubernetes emulator, each behind its own logging proxy so
//! every API request is attributed to the instance that sent it.
//!
//! What the production issue asks, pinned here: exactly one instance writes; a killed
//! leader is replaced within the lease duration; SIGTERM drains, releases the Lease and
//! exits 0 so the standby takes over at once; a second signal during the drain exits
//! at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use emulators::aws::Fault;
use emulators::k8s::K8sEmulator;
use serde_json::json;

/// The binary's Lease duration, client-go's default (README: "15 s lease, 10 s renew
/// deadline, 2 s retry").
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The binary's retry period, client-go's default.
const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// client-go's jitter: a candidate waits up to this fraction more than the retry period.
const JITTER_FACTOR: f64 = 1.2;

/// The longest wait between two attempts of a candidate: retry x (1 + jitter factor),
/// 4.4 s with client-go's defaults.
fn max_retry_wait() -> Duration {
    RETRY_PERIOD.mul_f64(1.0 + JITTER_FACTOR)
}

fn spec(namespaces: &[&str]) -> serde_json::Value {
    json!({"secretName": "ecr-pull", "namespaces": namespaces, "registries": [registry(REGION)]})
}

/// One instance with leader election, behind a proxy of its own.
async fn start(
    k8s: &K8sEmulator,
    aws: &emulators::aws::AwsEmulator,
    name: &str,
) -> (OperatorChild, Proxy) {
    let proxy = Proxy::start(k8s.addr()).await.expect("proxy starts");
    let op = operator(name, proxy.url(), aws)
        .args(leader_elect_args())
        .spawn()
        .unwrap();
    (op, proxy)
}

async fn wait_holder(k8s: &K8sEmulator, want: &str, within: Duration) {
    wait_until(format!("lease held by {want:?}"), within, || {
        lease_holder(k8s) == want
    })
    .await
}

async fn wait_ready(k8s: &K8sEmulator, cr: &str) {
    wait_until(format!("CR {cr} Ready"), Duration::from_secs(20), || {
        k8s.get("ecrpullsecrets", None, cr)
            .is_some_and(|cr| is_ready(&cr))
    })
    .await;
}

/// Writes other than the Lease's: Secrets, ServiceAccounts, CR status and finalizers, events.
fn object_writes(p: &Proxy) -> Vec<String> {
    p.writes()
        .iter()
        .filter(|r| !r.is_lease())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_only_the_lease_holder_writes() {
    let (k8s, aws) = emulators(&["app-1", "app-2"]).await;
    apply_cr(&k8s, "main", spec(&["app-*"]));
    let (a, pa) = start(&k8s, &aws, "pod-a").await;
    let (b, pb) = start(&k8s, &aws, "pod-b").await;

    wait_ready(&k8s, "main").await;
    // More work after the election settled: a new namespace and a spec change.
    apply_namespace(&k8s, "app-3");
    apply_cr(&k8s, "main", {
        let mut s = spec(&["app-*"]);
        s["serviceAccounts"] = json!(["default", "builder"]);
        s
    });
    wait_until("Secret in app-3", Duration::from_secs(15), || {
        k8s.get("secrets", Some("app-3"), "ecr-pull").is_some()
    })
    .await;
    wait_ready(&k8s, "main").await;

    let holder = lease_holder(&k8s);
    let (leader, standby) = match holder.as_str() {
        "pod-a" => ((&a, &pa), (&b, &pb)),
        "pod-b" => ((&b, &pb), (&a, &pa)),
        other => panic!("unexpected holder {other:?}"),
    };
    let lw = object_writes(leader.1);
    let sw = object_writes(standby.1);
    println!(
        "leader {} wrote {} objects; standby {} wrote {:?}",
        leader.0.pod_name,
        lw.len(),
        standby.0.pod_name,
        sw
    );
    assert!(
        lw.iter().any(|w| w.contains("/secrets")),
        "leader wrote no Secret: {lw:?}"
    );
    assert!(
        lw.iter().any(|w| w.contains("/serviceaccounts/")),
        "leader patched no ServiceAccount: {lw:?}"
    );
    assert!(
        lw.iter().any(|w| w.ends_with("/status")),
        "leader wrote no status: {lw:?}"
    );
    assert!(sw.is_empty(), "the standby wrote objects: {sw:?}");
    // The standby is alive and warm: it reads (lists and watches) and contends for the
    // Lease, nothing else.
    let standby_reqs = standby.1.requests();
    assert!(standby_reqs.iter().any(|r| r.query.contains("watch=")));
    assert!(standby_reqs.iter().any(|r| r.is_lease()));
    assert!(standby.1.writes().iter().all(Logged::is_lease));
    // Each replica names itself in its User-Agent, so a real API server's audit log
    // tells them apart as these proxies do.
    for (inst, proxy) in [(&a, &pa), (&b, &pb)] {
        let want = format!(
            "ecr-creds-refresher/{} ({})",
            env!("CARGO_PKG_VERSION"),
            inst.pod_name
        );
        let reqs = proxy.requests();
        assert!(!reqs.is_empty());
        assert!(
            reqs.iter().all(|r| r.user_agent == want),
            "{}: {:?}",
            inst.pod_name,
            reqs.iter()
                .map(|r| &r.user_agent)
                .collect::<std::collections::BTreeSet<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_duration() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    apply_cr(&k8s, "main", spec(&["app-*"]));
    let (mut a, _pa) = start(&k8s, &aws, "pod-a").await;
    wait_holder(&k8s, "pod-a", Duration::from_secs(10)).await;
    wait_ready(&k8s, "main").await;
    let (b, pb) = start(&k8s, &aws, "pod-b").await;
    // The standby is up (its probes answer) before the leader dies.
    wait_until("pod-b healthz", Duration::from_secs(10), || {
        std::net::TcpStream::connect(b.probe_addr).is_ok()
    })
    .await;

    a.signal("KILL").unwrap();
    let killed = Instant::now();
    a.wait_exit(Duration::from_secs(5)).await.unwrap();
    // Worst case: the standby saw the leader's last renewal up to one (jittered) wait
    // after it happened, possibly after the kill; the lease counts from that sighting
    // (the observer's clock, as client-go), and the takeover lands on the first attempt
    // after it expires. So lease + 2 waits, plus a second for polling and scheduling.
    let bound = LEASE_DURATION + max_retry_wait() * 2 + Duration::from_secs(1);
    wait_holder(&k8s, "pod-b", bound + Duration::from_secs(5)).await;
    let handover = killed.elapsed();
    println!("SIGKILL handover took {handover:?} (bound {bound:?})");
    assert!(
        handover <= bound,
        "handover took {handover:?}, bound {bound:?}"
    );

    // The new leader does the work: a namespace created after the handover is covered.
    apply_namespace(&k8s, "app-late");
    wait_until("Secret in app-late", Duration::from_secs(10), || {
        k8s.get("secrets", Some("app-late"), "ecr-pull").is_some()
    })
    .await;
    // ...by pod-b: its proxy records a request when the answer has passed through, which
    // can be a moment after the emulator stored the Secret.
    wait_until(
        "pod-b's write of app-late's Secret",
        Duration::from_secs(5),
        || {
            pb.writes()
                .iter()
                .any(|r| r.path.ends_with("/namespaces/app-late/secrets"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_releases_the_lease_and_the_standby_takes_over_at_once() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    apply_cr(&k8s, "main", spec(&["app-*"]));
    let (mut a, pa) = start(&k8s, &aws, "pod-a").await;
    wait_holder(&k8s, "pod-a", Duration::from_secs(10)).await;
    wait_ready(&k8s, "main").await;
    let (b, _pb) = start(&k8s, &aws, "pod-b").await;
    wait_until("pod-b healthz", Duration::from_secs(10), || {
        std::net::TcpStream::connect(b.probe_addr).is_ok()
    })
    .await;
    // Let the standby see the lease held (its first attempt fails), so the takeover below
    // comes from its retry loop, not from its start.
    wait_until("pod-b tried the lease", Duration::from_secs(10), || {
        _pb.requests().iter().any(|r| r.is_lease())
    })
    .await;

    a.signal("TERM").unwrap();
    let status = a
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits after SIGTERM");
    let exited = Instant::now();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", a.log());

    // Its last Lease write emptied the holder.
    let last_lease_write = pa
        .writes()
        .into_iter()
        .rfind(Logged::is_lease)
        .expect("pod-a wrote the lease");
    assert_eq!(last_lease_write.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&last_lease_write.body).unwrap();
    assert!(
        body["spec"]
            .get("holderIdentity")
            .is_none_or(|h| h.is_null() || h == ""),
        "release did not empty the holder: {}",
        body["spec"]
    );

    // No waiting out the 15 s lease: the standby's next retry takes it.
    let bound = max_retry_wait() + Duration::from_secs(1);
    wait_holder(&k8s, "pod-b", LEASE_DURATION).await;
    let takeover = exited.elapsed();
    println!("takeover after SIGTERM release took {takeover:?} (bound {bound:?})");
    assert!(takeover <= bound, "took {takeover:?}, bound {bound:?}");
    let l = k8s.get("leases", Some(OPERATOR_NAMESPACE), LEASE).unwrap();
    assert_eq!(l["spec"]["leaseTransitions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_the_drain_exits_at_once() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    // ECR answers only after 30 s: a reconcile stays in flight, so the drain would wait
    // the whole grace period (20 s).
    aws.set_fault(Fault::Latency(Duration::from_secs(30)), None);
    let (mut a, _pa) = start(&k8s, &aws, "pod-a").await;
    wait_holder(&k8s, "pod-a", Duration::from_secs(10)).await;
    apply_cr(&k8s, "main", spec(&["app-*"]));
    // Wait for the ECR call to be in flight (the fake counts a call when it starts it).
    wait_until("an ECR call", Duration::from_secs(10), || {
        aws.calls().ecr > 0
    })
    .await;

    a.signal("TERM").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.exited().is_none(), "exited before the drain ended");
    a.signal("TERM").unwrap();
    let hurried = Instant::now();
    let status = a
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("a second SIGTERM exits at once");
    println!("exit after the second SIGTERM: {:?}", hurried.elapsed());
    assert_ne!(
        status.code(),
        Some(0),
        "an aborted drain is not a clean stop"
    );
    assert!(a.log().contains("not drained in time"), "{}", a.log());
}
