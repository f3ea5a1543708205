//! Wiring: watches feed the caches and the work queue, the controller runs the reconciler
//! (on the leader only, when elected), probes and metrics report on it all.
//!
//! ```text
//! ECRPullSecrets ─┐                      ┌─> Reconciler ─> Secrets, ServiceAccounts,
//! Namespaces ─────┤ reflectors ─> queue ─┤                 status, events
//! managed Secrets ┤  (caches)            └─ TokenCache ─> AWS (one call per group)
//! ServiceAccounts ┘
//! credentials Secrets ─> aws::SecretCredentials channels
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::credentials::{credentials_from_secret_data, SecretCredentials, SecretState};
use crate::k8s::kind::{ECR_PULL_SECRETS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS};
use crate::k8s::types::{Namespace, Secret, ServiceAccount};
use crate::k8s::Client;
use crate::metrics;
use crate::reconcile::reconciler::{ObservedState, ReconcileError, Reconciler, GRANT_ANNOTATION};
use crate::reconcile::select::NamespaceView;
use crate::reconcile::spec::{EcrPullSecret, SecretRef, SpecPolicy};
use crate::reconcile::state::{
    project_namespace, split_list, ManagedSecret, SaView, MANAGED_SELECTOR, OWNER_ANNOTATION,
};
use crate::reconcile::status::{self, Reason};
use crate::reconcile::tokens::FetchToken;
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::{ObjectKey, Store};
use crate::runtime::unwind::{self, catch_panic};
use crate::runtime::watcher::{spawn_reflector, Event, KubeListWatch, WatcherConfig};

/// The watch caches the reconciler reads.
#[derive(Clone)]
pub struct Caches {
    pub crs: Store<EcrPullSecret>,
    pub namespaces: Store<NamespaceView>,
    pub secrets: Store<ManagedSecret>,
    pub service_accounts: Store<SaView>,
    /// The credentials Secrets CRs name, watched one by one.
    pub credentials: CredentialSecrets,
}

impl Caches {
    /// Resolves once every cache has its first full list.
    pub async fn synced(&self) {
        self.crs.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.secrets.wait_synced().await;
        self.service_accounts.wait_synced().await;
    }

    pub fn is_synced(&self) -> bool {
        self.crs.is_synced()
            && self.namespaces.is_synced()
            && self.secrets.is_synced()
            && self.service_accounts.is_synced()
    }

    /// Every CR name, to enqueue after a change that may concern any of them.
    pub fn cr_names(&self) -> Vec<String> {
        self.crs.keys().into_iter().map(|k| k.name).collect()
    }
}

impl ObservedState for Caches {
    fn cr(&self, name: &str) -> Option<EcrPullSecret> {
        self.crs
            .get(&ObjectKey::cluster(name))
            .map(|c| (*c).clone())
    }
    fn namespaces(&self) -> Vec<NamespaceView> {
        self.namespaces
            .list()
            .iter()
            .map(|n| (**n).clone())
            .collect()
    }
    fn managed_secrets_for(&self, owner: &str, secret_name: Option<&str>) -> Vec<ManagedSecret> {
        self.secrets
            .list()
            .iter()
            .filter(|s| s.owner == owner || Some(s.name.as_str()) == secret_name)
            .map(|s| (**s).clone())
            .collect()
    }
    fn service_accounts(&self) -> Vec<SaView> {
        self.service_accounts
            .list()
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }
    async fn credential_grants(&self, secret: &SecretRef) -> Vec<String> {
        self.credentials.grants(secret).await
    }
}

/// Enqueues every CR (cheap: the queue collapses dirty keys, and a reconcile that finds
/// nothing to change writes nothing).
fn enqueue_all(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add(key.name);
    }
}

/// Secret and ServiceAccount events are mostly our own writes echoing back: a reconcile
/// writing 1000 Secrets and ServiceAccounts gets 2000 events, each of which re-enqueued
/// the CRs at once, so with several CRs the workers re-planned without pause (bench: 10
/// CRs x 1000 namespaces burnt 23 CPU seconds). Enqueued after this delay instead, a burst
/// costs one reconcile per CR (the queue keeps the earliest pending time); a hand edit or
/// a deleted Secret is still repaired within a fraction of a second.
pub const ECHO_DEBOUNCE: Duration = Duration::from_millis(250);

fn enqueue_all_soon(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add_after(key.name, ECHO_DEBOUNCE);
    }
}

/// Starts the four reflectors. Handlers run after the cache took the change, so the
/// reconcile they trigger sees it.
pub fn start_watches(
    client: &Client,
    queue: &WorkQueue<String>,
    credentials: &CredentialSecrets,
    shutdown: &watch::Receiver<bool>,
) -> (Caches, Vec<JoinHandle<()>>) {
    let mut tasks = Vec::new();
    let lw = |collection: String, label_selector: Option<&str>| KubeListWatch {
        client: client.clone(),
        collection,
        label_selector: label_selector.map(str::to_string),
        field_selector: None,
    };

    let (q, creds) = (queue.clone(), credentials.clone());
    let (crs, task) = spawn_reflector(
        lw(ECR_PULL_SECRETS.collection(None), None),
        WatcherConfig::new("ecrpullsecrets"),
        |cr: &EcrPullSecret| Some(cr.clone()),
        move |event: Event<EcrPullSecret>| {
            match event {
                Event::Applied(cr) | Event::Deleted(cr) => {
                    if let Some(name) = cr.metadata.name {
                        q.add(name);
                    }
                }
                Event::Restarted(all) => {
                    for cr in all {
                        if let Some(name) = cr.metadata.name {
                            q.add(name);
                        }
                    }
                }
            }
            // A CR changed what it refers to: watches nobody refers to any more go.
            creds.references_changed();
        },
        shutdown.clone(),
    );
    tasks.push(task);

    let (q, c) = (queue.clone(), crs.clone());
    let (namespaces, task) = spawn_reflector(
        lw(NAMESPACES.collection(None), None),
        WatcherConfig::new("namespaces"),
        project_namespace,
        move |_: Event<Namespace>| enqueue_all(&q, &c),
        shutdown.clone(),
    );
    tasks.push(task);

    let (q, c) = (queue.clone(), crs.clone());
    let (secrets, task) = spawn_reflector(
        lw(SECRETS.collection(None), Some(MANAGED_SELECTOR)),
        WatcherConfig::new("managed secrets"),
        ManagedSecret::project,
        move |event: Event<Secret>| match event {
            // A hand edit or deletion concerns only the owner.
            Event::Applied(s) | Event::Deleted(s) => {
                match s.metadata.annotations.get(OWNER_ANNOTATION) {
                    Some(owner) => q.add_after(owner.clone(), ECHO_DEBOUNCE),
                    None => enqueue_all(&q, &c),
                }
            }
            Event::Restarted(_) => enqueue_all(&q, &c),
        },
        shutdown.clone(),
    );
    tasks.push(task);

    let (q, c) = (queue.clone(), crs.clone());
    let (service_accounts, task) = spawn_reflector(
        lw(SERVICE_ACCOUNTS.collection(None), None),
        WatcherConfig::new("serviceaccounts"),
        SaView::project,
        move |event: Event<ServiceAccount>| match event {
            Event::Applied(_) | Event::Deleted(_) => enqueue_all_soon(&q, &c),
            Event::Restarted(_) => enqueue_all(&q, &c),
        },
        shutdown.clone(),
    );
    tasks.push(task);

    (
        Caches {
            crs,
            namespaces,
            secrets,
            service_accounts,
            credentials: credentials.clone(),
        },
        tasks,
    )
}

/// Watches the credentials Secrets (the operator-wide one and those CRs name) and
/// publishes each version into the AWS side's channel, so rotated keys apply at once.
/// Watches start on first use and stop once no CR refers to their Secret.
#[derive(Clone)]
pub struct CredentialSecrets {
    inner: Arc<CredentialInner>,
}

struct CredentialInner {
    client: Client,
    queue: WorkQueue<String>,
    crs: Mutex<Option<Store<EcrPullSecret>>>,
    shutdown: watch::Receiver<bool>,
    watched: Mutex<HashMap<SecretRef, WatchedSecret>>,
    /// Secrets watched whatever the CRs say (the operator-wide credentials).
    pinned: Mutex<HashSet<SecretRef>>,
    /// Set when CRs changed; the pruner then drops unreferenced watches.
    changed: tokio::sync::Notify,
}

/// One watched credentials Secret.
struct WatchedSecret {
    credentials: SecretCredentials,
    /// The CRs its grant annotation names; `None` until first read.
    grants: watch::Receiver<Option<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for WatchedSecret {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a new watch gets to read its Secret once before a caller goes on without it.
const FIRST_READ: Duration = Duration::from_secs(5);

impl CredentialSecrets {
    pub fn new(client: Client, queue: WorkQueue<String>, shutdown: watch::Receiver<bool>) -> Self {
        CredentialSecrets {
            inner: Arc::new(CredentialInner {
                client,
                queue,
                crs: Mutex::new(None),
                shutdown,
                watched: Mutex::new(HashMap::new()),
                pinned: Mutex::new(HashSet::new()),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Lets a change of credentials enqueue every CR, and tells which Secrets CRs name.
    pub fn set_crs(&self, crs: Store<EcrPullSecret>) {
        *lock(&self.inner.crs) = Some(crs);
    }

    /// Watches `r` for as long as the operator runs.
    pub fn pin(&self, r: &SecretRef) -> SecretCredentials {
        lock(&self.inner.pinned).insert(r.clone());
        self.get(r)
    }

    /// The channel for a Secret, starting its watch on first use. Until the first list
    /// lands the credentials read as "not read yet" (CredentialsMissing, retried).
    pub fn get(&self, r: &SecretRef) -> SecretCredentials {
        self.watch(r).0
    }

    /// The ECRPullSecrets Secret `r` grants its use to, once read (at most
    /// [`FIRST_READ`] is waited for a new watch); empty when missing or unreadable.
    pub async fn grants(&self, r: &SecretRef) -> Vec<String> {
        let (_, mut grants) = self.watch(r);
        let _ = tokio::time::timeout(FIRST_READ, grants.wait_for(Option::is_some)).await;
        let current = grants.borrow().clone();
        current.unwrap_or_default()
    }

    /// How many Secrets are watched now.
    pub fn watched(&self) -> usize {
        lock(&self.inner.watched).len()
    }

    /// CRs changed: prune soon (see [`CredentialSecrets::spawn_pruner`]).
    pub fn references_changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Stops the watches no CR refers to and that are not pinned, a moment after CRs
    /// change (an edit storm prunes once).
    pub fn spawn_pruner(&self) -> JoinHandle<()> {
        let this = self.clone();
        let mut stop = self.inner.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = this.inner.changed.notified() => {}
                    _ = crate::runtime::shutdown_requested(&mut stop) => return,
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                this.prune();
            }
        })
    }

    /// Drops the watches of Secrets neither pinned nor named by a cached CR.
    pub fn prune(&self) {
        let Some(crs) = lock(&self.inner.crs).clone() else {
            return;
        };
        let mut keep: HashSet<SecretRef> = lock(&self.inner.pinned).clone();
        keep.extend(crs.list().iter().filter_map(|cr| {
            cr.spec
                .aws
                .as_ref()
                .and_then(|a| a.credentials_secret_ref.clone())
        }));
        lock(&self.inner.watched).retain(|r, _| keep.contains(r));
    }

    fn watch(&self, r: &SecretRef) -> (SecretCredentials, watch::Receiver<Option<Vec<String>>>) {
        let mut watched = lock(&self.inner.watched);
        if let Some(w) = watched.get(r) {
            return (w.credentials.clone(), w.grants.clone());
        }
        let origin = format!("{}/{}", r.namespace, r.name);
        let (tx, rx) = SecretCredentials::channel(origin.clone());
        let (grants_tx, grants_rx) = watch::channel(None);
        let inner = Arc::downgrade(&self.inner);
        let publish = move |state: SecretState, grants: Vec<String>| {
            // A rotated key changes the fetcher's credentials fingerprint, so the token
            // cache refetches that group at the next reconcile; a changed grant is
            // judged again at the next reconcile of each CR.
            tx.send_replace(state);
            grants_tx.send_replace(Some(grants));
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let crs = lock(&inner.crs).clone();
            if let Some(crs) = crs {
                enqueue_all(&inner.queue, &crs);
            }
        };
        let missing = format!("Secret {origin} not found");
        let read = move |s: &Secret| {
            let grants = split_list(s.metadata.annotations.get(GRANT_ANNOTATION));
            (Some(credentials_from_secret_data(&s.data)), grants)
        };
        let (_, task) = spawn_reflector(
            KubeListWatch {
                client: self.inner.client.clone(),
                collection: SECRETS.collection(Some(&r.namespace)),
                label_selector: None,
                field_selector: Some(format!("metadata.name={}", r.name)),
            },
            WatcherConfig::new(format!("credentials secret {origin}")),
            |_: &Secret| Some(()),
            move |event: Event<Secret>| match event {
                Event::Applied(s) => {
                    let (state, grants) = read(&s);
                    publish(state, grants)
                }
                Event::Deleted(_) => publish(Some(Err(missing.clone())), Vec::new()),
                Event::Restarted(all) => match all.first() {
                    Some(s) => {
                        let (state, grants) = read(s);
                        publish(state, grants)
                    }
                    None => publish(Some(Err(missing.clone())), Vec::new()),
                },
            },
            self.inner.shutdown.clone(),
        );
        watched.insert(
            r.clone(),
            WatchedSecret {
                credentials: rx.clone(),
                grants: grants_rx.clone(),
                task,
            },
        );
        (rx, grants_rx)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the queue-depth gauge current.
pub fn spawn_queue_gauge(
    queue: WorkQueue<String>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            metrics::set_queue_depth(queue.len());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = crate::runtime::shutdown_requested(&mut shutdown) => return,
            }
        }
    })
}

/// Runs one reconcile and records its duration and result. A panic (a bug) fails only
/// this reconcile: it is logged, counted and written into the CR's status, and the
/// controller retries it with backoff.
pub async fn timed_reconcile<F: FetchToken, S: ObservedState>(
    reconciler: &Reconciler<F, S>,
    name: &str,
) -> Result<crate::runtime::controller::Action, ReconcileError> {
    let started = Instant::now();
    let result = match catch_panic(reconciler.reconcile(name)).await {
        Ok(result) => result,
        Err(panic) => {
            tracing::error!(
                cr = name,
                panic = unwind::message(&panic),
                "reconcile panicked"
            );
            metrics::observe_reconcile(started.elapsed().as_secs_f64(), "panic");
            reconciler.report_panic(name).await;
            return Err(ReconcileError {
                reason: Reason::ReconcilePanicked,
                message: "the reconcile panicked".to_string(),
            });
        }
    };
    let label = if result.is_ok() { "success" } else { "error" };
    metrics::observe_reconcile(started.elapsed().as_secs_f64(), label);
    result
}

// === the whole operator ===

/// The pod's namespace from its service-account files, when running in a pod.
fn service_account_namespace() -> Option<String> {
    std::fs::read_to_string(format!(
        "{}/namespace",
        crate::k8s::auth::SERVICE_ACCOUNT_DIR
    ))
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

/// A reconcile failure is retried from this delay, doubling to the cap.
pub const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(2);
pub const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why the operator could not start. Printed once; the process exits 2.
#[derive(Debug)]
pub struct StartError {
    pub what: String,
    pub cause: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.cause)
    }
}

impl std::error::Error for StartError {}

fn start_error(what: impl Into<String>, cause: impl std::fmt::Display) -> StartError {
    StartError {
        what: what.into(),
        cause: cause.to_string(),
    }
}

/// The reconciler as the binary runs it.
pub type OperatorReconciler = Reconciler<crate::aws::fetcher::AwsTokenFetcher, Caches>;

/// A started operator: its parts, for the binary's signal handling and for tests.
pub struct Running {
    pub client: Client,
    pub caches: Caches,
    pub queue: WorkQueue<String>,
    pub reconciler: Arc<OperatorReconciler>,
    pub readiness: crate::admin::Readiness,
    /// `true` while this instance may write (always, without leader election).
    pub leading: watch::Receiver<bool>,
    /// Where probes and metrics listen (resolved ports).
    pub probe_addr: Option<std::net::SocketAddr>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    elector_stop: watch::Sender<bool>,
    elector: Option<JoinHandle<Result<(), crate::runtime::leader::Error>>>,
    controller: Option<crate::runtime::controller::Controller>,
    _keep_leading: Option<watch::Sender<bool>>,
}

/// Connects, checks access, wires every part and starts serving. With `cfg.once`, the
/// controller is not started: call [`Running::run_once`].
pub async fn start(
    cfg: &crate::config::Config,
    env: crate::aws::env::AwsEnv,
) -> Result<Running, StartError> {
    use crate::aws::credentials::SourceKind;
    use crate::aws::fetcher::{AwsTokenFetcher, SecretLookup};
    use crate::aws::setup::{Aws, AwsSettings};
    use crate::k8s::{ClientConfig, ListParams};
    use crate::reconcile::events::EventRecorder;
    use crate::reconcile::reconciler::Settings;
    use crate::reconcile::tokens::TokenCache;
    use crate::runtime::controller::{spawn_controller, ControllerConfig};
    use crate::runtime::leader::{LeaderElector, LeaseConfig};

    let client_cfg = match &cfg.api_server {
        Some(url) => ClientConfig::out_of_cluster(
            url,
            cfg.token_file.as_deref(),
            cfg.ca_file.as_deref(),
            cfg.allow_plain_http_token,
        ),
        None => ClientConfig::in_cluster(),
    };
    let client = client_cfg
        .map(|c| c.with_identity(&cfg.identity))
        .and_then(Client::new)
        .map_err(|e| start_error("cannot configure the Kubernetes client", e))?
        .with_observer(Arc::new(metrics::api_request));
    // Fail closed and early: a wrong CA, a refused token, no CRD or no RBAC show here.
    if let Err(e) = client
        .list::<EcrPullSecret>(
            &ECR_PULL_SECRETS.collection(None),
            &ListParams {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
    {
        let hint = match e.code() {
            Some(404) => " (is the CRD installed? kubectl apply -f crd.yaml)",
            Some(401) => " (the token was refused)",
            Some(403) => " (RBAC: apply rbac.yaml)",
            _ => "",
        };
        return Err(start_error(
            format!("cannot list ECRPullSecrets at {}{hint}", client.url()),
            e,
        ));
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let queue: WorkQueue<String> =
        WorkQueue::with_failure_backoff(FAILURE_BACKOFF_BASE, FAILURE_BACKOFF_MAX);
    let creds = CredentialSecrets::new(client.clone(), queue.clone(), shutdown_rx.clone());
    let global_secret = cfg.credentials_secret.as_ref().map(|(namespace, name)| {
        creds.pin(&SecretRef {
            name: name.clone(),
            namespace: namespace.clone(),
        })
    });
    let source: SourceKind = cfg
        .aws_credentials_source
        .parse()
        .map_err(|e| start_error("bad --aws-credentials-source", e))?;
    if cfg.region.is_none() {
        tracing::info!("AWS_REGION is unset: STS uses us-east-1 and every ECRPullSecret must name its region or registries");
    }
    let aws = Aws::setup(
        &env,
        AwsSettings {
            region: cfg
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_string()),
            source,
            assume_role: None,
            http: crate::aws::http::HttpConfig::default(),
        },
        global_secret,
    )
    .map_err(|e| start_error("cannot configure AWS", e))?;
    let lookup_creds = creds.clone();
    let lookup: SecretLookup = Arc::new(move |r: &SecretRef| Some(lookup_creds.get(r)));
    let tokens = Arc::new(TokenCache::new(AwsTokenFetcher::new(aws, lookup)));

    let (caches, _watches) = start_watches(&client, &queue, &creds, &shutdown_rx);
    creds.set_crs(caches.crs.clone());
    creds.spawn_pruner();
    let operator_namespace = cfg.namespace.clone().or_else(service_account_namespace);
    let reconciler = Arc::new(Reconciler::new(
        client.clone(),
        caches.clone(),
        tokens,
        EventRecorder::new(client.clone(), cfg.identity.clone()),
        Settings {
            spec_policy: SpecPolicy {
                default_registries: cfg.registries.clone(),
                min_interval_floor: cfg.min_refresh_interval,
                allowed_role_arns: cfg.allowed_role_arns.clone(),
            },
            operator_namespace: operator_namespace.clone(),
            default_region: cfg.region.clone(),
            ..Settings::default()
        },
    ));

    // Probes and metrics: bind now so a taken port fails startup.
    let readiness = crate::admin::Readiness::new();
    let caches_ready = readiness.register("caches");
    {
        let caches = caches.clone();
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            caches.synced().await;
            caches_ready.set_ready(true);
            tracing::info!("caches synced");
            // A dropped ReadyHandle reports not ready: hold it while the operator runs.
            crate::runtime::shutdown_requested(&mut stop).await;
            drop(caches_ready);
        });
    }
    let mut bound = Vec::new();
    for (addr, routes, what) in [
        (
            cfg.probe_addr,
            crate::admin::Routes::probes(readiness.clone()),
            "health probes",
        ),
        (cfg.metrics_addr, crate::admin::Routes::metrics(), "metrics"),
    ] {
        let Some(addr) = addr else {
            bound.push(None);
            continue;
        };
        let server = crate::admin::Server::bind(addr)
            .await
            .map_err(|e| start_error(format!("cannot serve {what} on {addr}"), e))?;
        let local = server.local_addr();
        tracing::info!(addr = ?local, "serving {what}");
        bound.push(local);
        let mut stop = shutdown_rx.clone();
        tokio::spawn(server.serve(routes, async move {
            crate::runtime::shutdown_requested(&mut stop).await;
        }));
    }
    spawn_queue_gauge(queue.clone(), shutdown_rx.clone());

    let (elector_stop, elector_stop_rx) = watch::channel(false);
    let mut running = Running {
        client: client.clone(),
        caches: caches.clone(),
        queue: queue.clone(),
        reconciler: reconciler.clone(),
        readiness,
        leading: watch::channel(true).1,
        probe_addr: bound.first().copied().flatten(),
        metrics_addr: bound.get(1).copied().flatten(),
        shutdown_tx,
        elector_stop,
        elector: None,
        controller: None,
        _keep_leading: None,
    };
    if cfg.once {
        return Ok(running);
    }

    // Leader election: only the leader reconciles; standbys keep their caches warm.
    if cfg.leader_elect {
        let namespace = cfg
            .leader_election_namespace
            .clone()
            .or_else(|| operator_namespace.clone())
            .ok_or_else(|| {
                start_error(
                    "leader election needs a namespace",
                    "set --leader-election-namespace or POD_NAMESPACE",
                )
            })?;
        let elector = LeaderElector::new(
            client.clone(),
            &namespace,
            &cfg.leader_election_id,
            &cfg.identity,
            LeaseConfig::default(),
        );
        let mut stop = elector_stop_rx;
        let (rx, task) = elector.spawn(async move {
            crate::runtime::shutdown_requested(&mut stop).await;
        });
        running.leading = rx;
        running.elector = Some(task);
    } else {
        metrics::set_leader(true);
        let (tx, rx) = watch::channel(true);
        running.leading = rx;
        running._keep_leading = Some(tx);
    }

    let ready = {
        let caches = caches.clone();
        let mut leading = running.leading.clone();
        async move {
            caches.synced().await;
            let _ = leading.wait_for(|l| *l).await;
        }
    };
    let r = reconciler.clone();
    running.controller = Some(spawn_controller(
        queue,
        ControllerConfig::new("ecrpullsecret", cfg.workers),
        move |name: String| {
            let r = r.clone();
            async move { timed_reconcile(&r, &name).await }
        },
        ready,
        shutdown_rx,
    ));
    Ok(running)
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Drained within the grace period; the lease (if any) released.
    Clean,
    /// Grace ran out or a second signal came: in-flight work aborted.
    Aborted,
    /// Leadership was lost: writes stopped at once.
    LostLeadership,
}

// === impl Running ===

impl Running {
    /// Resolves when this instance, having led, stops leading. Never resolves without
    /// leader election.
    pub async fn lost_leadership(&self) {
        let mut leading = self.leading.clone();
        let _ = leading.wait_for(|l| *l).await;
        let _ = leading.wait_for(|l| !*l).await;
        if self.elector.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops writing at once (leadership lost): abort in-flight reconciles.
    pub fn abort(mut self) -> Stopped {
        if let Some(c) = self.controller.take() {
            c.task.abort();
        }
        let _ = self.shutdown_tx.send(true);
        Stopped::LostLeadership
    }

    /// Two-stage shutdown: stop intake and drain within `grace` (or until `hurry`
    /// resolves: a second signal), then release the lease.
    pub async fn shutdown(
        mut self,
        grace: Duration,
        hurry: impl std::future::Future<Output = ()>,
    ) -> Stopped {
        let _ = self.shutdown_tx.send(true);
        let mut drained = true;
        if let Some(controller) = self.controller.take() {
            let mut task = controller.task;
            drained = tokio::select! {
                r = tokio::time::timeout(grace, &mut task) => r.is_ok(),
                _ = hurry => false,
            };
            if !drained {
                tracing::warn!("shutdown: not drained in time; aborting in-flight work");
                task.abort();
            }
        }
        // Only now, with no write in flight, let another replica take over.
        let _ = self.elector_stop.send(true);
        if let Some(elector) = self.elector.take() {
            match tokio::time::timeout(Duration::from_secs(5), elector).await {
                Ok(Ok(Ok(()))) => tracing::info!("leader lease released"),
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the leader lease"),
                _ => tracing::warn!("leader election did not stop in time"),
            }
        }
        if drained {
            Stopped::Clean
        } else {
            Stopped::Aborted
        }
    }

    /// `--once`: reconcile every CR once; the number that failed or are not Ready.
    pub async fn run_once(self, sync_timeout: Duration) -> Result<(usize, usize), StartError> {
        if tokio::time::timeout(sync_timeout, self.caches.synced())
            .await
            .is_err()
        {
            let _ = self.shutdown_tx.send(true);
            return Err(start_error(
                "--once",
                format!("the watch caches did not fill within {sync_timeout:?}"),
            ));
        }
        let names = self.caches.cr_names();
        let mut failed = 0;
        let mut reconciled = Vec::new();
        for name in &names {
            match timed_reconcile(&self.reconciler, name).await {
                Ok(_) => reconciled.push(name),
                Err(e) => {
                    failed += 1;
                    tracing::error!(cr = %name, error = %e, "reconcile failed");
                }
            }
        }
        // Ready=False without an error (a conflict, a missing namespace) fails a one-shot
        // run too: read back the status the reconcile wrote.
        for name in reconciled {
            let ready = match self
                .client
                .get::<EcrPullSecret>(&ECR_PULL_SECRETS.object(None, name))
                .await
            {
                Ok(cr) => cr.status.as_ref().is_some_and(status::is_ready),
                Err(_) => false,
            };
            if ready {
                tracing::info!(cr = %name, "reconciled and Ready");
            } else {
                failed += 1;
                tracing::error!(cr = %name, "not Ready after reconcile (see its status)");
            }
        }
        let _ = self.shutdown_tx.send(true);
        Ok((names.len(), failed))
    }
}
