//! Leader election against the in-repo Kubernetes emulator on loopback: the Lease as the
//! API server stores it, create races, release and takeover, stepping down when the API
//! fails. Every test runs under the emulator's RBAC enforcement loaded from rbac.yaml, so
//! the elector works with exactly the permissions we ship (a missing grant is a 403).
//!
//! The expiry timing itself is pinned on paused time in `elector/tests.rs`; these tests
//! use the default timings, or short ones where a test waits for attempts or renewals, and
//! they wait for what they observe (a replica's requests through its logging proxy, the
//! Lease's renewTime), never for a fixed time.

use std::time::Duration;

use crate::k8s::{Client, ClientConfig};
use crate::runtime::leader::{LeaderElector, LeaseConfig};
use emulators::k8s::rbac::Attributes;
use emulators::k8s::{EmulatorConfig, FaultConfig, K8sEmulator, RbacPolicy};
use emulators::proxy::Proxy;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

const NS: &str = "ecr-creds-refresher";
const LEASE: &str = crate::runtime::leader::DEFAULT_LEASE_NAME;

/// The operator's permissions as rbac.yaml grants them (every Role and ClusterRole there
/// is bound to its ServiceAccount; tests/manifests/check_invariants.py verifies that).
fn shipped_rbac() -> RbacPolicy {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml")).unwrap();
    let mut policy = RbacPolicy {
        user: format!("system:serviceaccount:{NS}:ecr-creds-refresher"),
        rules: Vec::new(),
    };
    policy.add_role_yaml(&yaml, None).unwrap();
    assert!(!policy.rules.is_empty());
    policy
}

async fn emulator() -> K8sEmulator {
    let emu = K8sEmulator::start(EmulatorConfig {
        namespaces: vec!["default".into(), NS.into()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    emu.set_rbac(Some(shipped_rbac()));
    emu
}

fn client(emu: &K8sEmulator) -> Client {
    client_to(&emu.url())
}

fn client_to(url: &str) -> Client {
    Client::new(ClientConfig::new(url).unwrap()).unwrap()
}

/// Short timings where nothing has to expire: a candidate retries every 300 to 660 ms, so
/// a test sees several attempts in a second or two; the lease (4 s) outlives them.
fn quick() -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

struct Running {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::runtime::leader::LeaderError>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("elector did not stop")
            .unwrap()
            .unwrap();
    }
}

fn spawn(emu: &K8sEmulator, id: &str, cfg: LeaseConfig) -> Running {
    spawn_with(client(emu), id, cfg)
}

fn spawn_with(client: Client, id: &str, cfg: LeaseConfig) -> Running {
    let elector = LeaderElector::new(client, NS, LEASE, id, cfg);
    let leading = elector.subscribe();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async move {
        let _ = rx.await;
    }));
    Running {
        leading,
        stop: Some(tx),
        task,
    }
}

async fn wait_leading(r: &mut Running, want: bool, within: Duration) {
    tokio::time::timeout(within, r.leading.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("leading did not become {want} within {within:?}"))
        .unwrap();
}

fn lease(emu: &K8sEmulator) -> Value {
    emu.get("leases", Some(NS), LEASE).expect("lease exists")
}

/// `2026-11-26T21:00:00.123456Z`: MicroTime, exactly six fractional digits, UTC.
fn is_micro_time(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit)
}

#[tokio::test]
async fn first_replica_creates_the_lease_with_micro_times_and_leads() {
    let emu = emulator().await;
    let mut a = spawn(&emu, "pod-a_1", LeaseConfig::default());
    wait_leading(&mut a, true, Duration::from_secs(5)).await;

    let l = lease(&emu);
    assert_eq!(l["spec"]["holderIdentity"], "pod-a_1");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(l["spec"]["leaseTransitions"], 0);
    assert!(is_micro_time(&l["spec"]["acquireTime"]), "{}", l["spec"]);
    assert!(is_micro_time(&l["spec"]["renewTime"]), "{}", l["spec"]);
    assert_eq!(emu.count("create", "leases"), 1);
    a.stop().await;
}

/// Lease requests a replica sent through its proxy: (GETs, writes that succeeded).
fn lease_traffic(p: &Proxy) -> (usize, usize) {
    let lease: Vec<_> = p.requests().into_iter().filter(|r| r.is_lease()).collect();
    let gets = lease.iter().filter(|r| r.method == "GET").count();
    let won = lease
        .iter()
        .filter(|r| r.is_write() && r.status < 300)
        .count();
    (gets, won)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_starting_together_elect_exactly_one() {
    let emu = emulator().await;
    // Each replica behind its own logging proxy: its attempts are seen one by one.
    let (pa, pb) = (
        Proxy::start(emu.addr()).await.expect("proxy starts"),
        Proxy::start(emu.addr()).await.expect("proxy starts"),
    );
    let mut a = spawn_with(client_to(&pa.url()), "pod-a_1", quick());
    let mut b = spawn_with(client_to(&pb.url()), "pod-b_2", quick());
    tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            _ = a.leading.wait_for(|v| *v) => {}
            _ = b.leading.wait_for(|v| *v) => {}
        }
    })
    .await
    .expect("nobody leads");
    let a_won = *a.leading.borrow();
    let (winner, loser) = if a_won { (&pa, &pb) } else { (&pb, &pa) };
    // The loser's next three attempts (each a read of the held lease) must leave it
    // waiting: it never writes the lease, and the winner keeps leading throughout.
    let (seen, _) = lease_traffic(loser);
    emulators::wait::wait_until(
        "the loser's next three attempts",
        Duration::from_secs(10),
        || lease_traffic(loser).0 >= seen + 3,
    )
    .await;
    let (la, lb) = (*a.leading.borrow(), *b.leading.borrow());
    assert!(
        la ^ lb && la == a_won,
        "exactly one leader, the first: a={la} b={lb}"
    );
    assert_eq!(lease_traffic(loser).1, 0, "the loser wrote the lease");
    assert!(
        lease_traffic(winner).1 >= 2,
        "the winner created and renewed it"
    );
    let holder = lease(&emu)["spec"]["holderIdentity"].clone();
    assert_eq!(holder, if la { "pod-a_1" } else { "pod-b_2" });
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_releases_the_lease_and_the_next_replica_takes_over_with_a_transition() {
    let emu = emulator().await;
    let mut a = spawn(&emu, "pod-a_1", LeaseConfig::default());
    wait_leading(&mut a, true, Duration::from_secs(5)).await;
    let mut leading_a = a.leading.clone();
    a.stop().await;
    assert!(
        !*leading_a.borrow_and_update(),
        "stopped leading before releasing"
    );

    let l = lease(&emu);
    assert!(
        l["spec"].get("holderIdentity").is_none_or(|h| h == ""),
        "holder not emptied: {}",
        l["spec"]
    );
    assert_eq!(l["spec"]["leaseTransitions"], 0);

    // No waiting out the 15 s lease: the released lease is free at once.
    let mut b = spawn(&emu, "pod-b_2", LeaseConfig::default());
    wait_leading(&mut b, true, Duration::from_secs(3)).await;
    let l = lease(&emu);
    assert_eq!(l["spec"]["holderIdentity"], "pod-b_2");
    assert_eq!(l["spec"]["leaseTransitions"], 1);
    b.stop().await;
}

#[tokio::test]
async fn leader_steps_down_when_the_api_server_refuses_lease_writes() {
    let emu = emulator().await;
    // Short timings so the deadline passes in about a second of real time.
    let cfg = LeaseConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
    };
    let mut a = spawn(&emu, "pod-a_1", cfg);
    wait_leading(&mut a, true, Duration::from_secs(5)).await;

    emu.faults().set(FaultConfig {
        error_code: Some(500),
        every_nth: Some(1),
        resources: vec!["leases".into()],
        ..FaultConfig::default()
    });
    let broke = tokio::time::Instant::now();
    wait_leading(&mut a, false, Duration::from_secs(3)).await;
    let after = broke.elapsed();
    assert!(
        after <= Duration::from_millis(1500),
        "stepped down after {after:?}"
    );

    // Once the API heals, it wins back its own (unexpired, still named) lease.
    emu.faults().clear();
    wait_leading(&mut a, true, Duration::from_secs(3)).await;
    assert_eq!(lease(&emu)["spec"]["leaseTransitions"], 0);
    a.stop().await;
}

#[tokio::test]
async fn elector_works_under_the_shipped_rbac_and_uses_only_lease_verbs() {
    let emu = emulator().await;
    let mut a = spawn(&emu, "pod-a_1", quick());
    wait_leading(&mut a, true, Duration::from_secs(5)).await;
    // A renewal, seen as one: still ours, renewTime moved past acquireTime. (The release
    // is an update too, so counting updates could not tell a renewal from it.)
    let acquired = lease(&emu)["spec"]["acquireTime"].clone();
    emulators::wait::wait_until("a renewal", Duration::from_secs(5), || {
        let spec = &lease(&emu)["spec"];
        spec["holderIdentity"] == "pod-a_1" && spec["renewTime"] != acquired
    })
    .await;
    a.stop().await;

    let requests = emu.requests();
    let forbidden: Vec<_> = requests.iter().filter(|r| r.code == 403).collect();
    assert!(forbidden.is_empty(), "refused by rbac.yaml: {forbidden:?}");
    for verb in ["get", "create", "update"] {
        assert!(
            requests
                .iter()
                .any(|r| r.verb == verb && r.resource == "leases" && r.code < 300),
            "{verb} on leases never succeeded"
        );
    }
    assert!(requests.iter().all(|r| r.resource == "leases"));
    // Released under enforcement too.
    assert!(lease(&emu)["spec"]
        .get("holderIdentity")
        .is_none_or(|h| h == ""));
}

fn allowed(
    policy: &RbacPolicy,
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    policy
        .check(&Attributes {
            verb,
            group,
            resource,
            subresource,
            namespace: ns,
            name,
        })
        .is_ok()
}

#[test]
fn rbac_yaml_grants_what_the_operator_does_and_nothing_around_it() {
    let p = shipped_rbac();
    let crd = "ecr.creds.dev";
    let lease_group = "coordination.k8s.io";
    // Leases: only the named one, only in the operator's namespace, only get/update;
    // create cannot be narrowed by name.
    for verb in ["get", "update"] {
        assert!(
            allowed(&p, verb, lease_group, "leases", Some(NS), Some(LEASE)),
            "{verb}"
        );
        assert!(
            !allowed(&p, verb, lease_group, "leases", Some(NS), Some("other")),
            "{verb}"
        );
        assert!(
            !allowed(
                &p,
                verb,
                lease_group,
                "leases",
                Some("default"),
                Some(LEASE)
            ),
            "{verb}"
        );
    }
    assert!(allowed(&p, "create", lease_group, "leases", Some(NS), None));
    for verb in ["list", "watch", "patch", "delete"] {
        assert!(
            !allowed(&p, verb, lease_group, "leases", Some(NS), Some(LEASE)),
            "{verb}"
        );
    }
    // The CRs and their status, cluster-wide; never created or deleted by us, and only
    // ever patched (tests/rbac_by_use.rs proves these are all the operator uses).
    for verb in ["get", "list", "watch", "patch"] {
        assert!(
            allowed(&p, verb, crd, "ecrpullsecrets", None, Some("x")),
            "{verb}"
        );
    }
    assert!(!allowed(
        &p,
        "update",
        crd,
        "ecrpullsecrets",
        None,
        Some("x")
    ));
    assert!(allowed(
        &p,
        "patch",
        crd,
        "ecrpullsecrets/status",
        None,
        Some("x")
    ));
    assert!(!allowed(
        &p,
        "update",
        crd,
        "ecrpullsecrets/status",
        None,
        Some("x")
    ));
    assert!(!allowed(&p, "create", crd, "ecrpullsecrets", None, None));
    assert!(!allowed(
        &p,
        "delete",
        crd,
        "ecrpullsecrets",
        None,
        Some("x")
    ));
    // Namespaces are only read.
    assert!(allowed(&p, "watch", "", "namespaces", None, None));
    assert!(!allowed(
        &p,
        "patch",
        "",
        "namespaces",
        None,
        Some("team-a")
    ));
    // Pull Secrets and ServiceAccounts in any namespace, written by patch only.
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        assert!(
            allowed(&p, verb, "", "secrets", Some("team-a"), Some("ecr")),
            "{verb}"
        );
    }
    assert!(!allowed(
        &p,
        "update",
        "",
        "secrets",
        Some("team-a"),
        Some("ecr")
    ));
    assert!(allowed(
        &p,
        "patch",
        "",
        "serviceaccounts",
        Some("team-a"),
        Some("default")
    ));
    assert!(!allowed(
        &p,
        "update",
        "",
        "serviceaccounts",
        Some("team-a"),
        Some("default")
    ));
    assert!(!allowed(
        &p,
        "delete",
        "",
        "serviceaccounts",
        Some("team-a"),
        Some("default")
    ));
    assert!(!allowed(
        &p,
        "create",
        "",
        "serviceaccounts",
        Some("team-a"),
        None
    ));
    // The AWS credentials Secret in the operator's namespace (the cluster-wide grant).
    assert!(allowed(
        &p,
        "get",
        "",
        "secrets",
        Some(NS),
        Some("aws-credentials")
    ));
    // Events only in `default`.
    assert!(allowed(&p, "create", "", "events", Some("default"), None));
    assert!(!allowed(&p, "create", "", "events", Some("team-a"), None));
    assert!(!allowed(
        &p,
        "patch",
        "",
        "events",
        Some("default"),
        Some("e")
    ));
    // Nothing else.
    assert!(!allowed(&p, "get", "", "configmaps", Some(NS), Some("x")));
    assert!(!allowed(&p, "create", "", "pods", Some(NS), None));
    assert!(!allowed(&p, "get", "", "nodes", None, Some("n")));
}
