//! The operator, wired: watches feed the caches and the work queue, the controller runs
//! the reconciler (on the leader only, when elected), probes and metrics report on it all.
//! Everything that knows more than one part lives here; the parts know only their own.
//!
//! ```text
//! ECRPullSecrets ─┐                      ┌─> Reconciler ─> Secrets, ServiceAccounts,
//! Namespaces ─────┤ reflectors ─> queue ─┤                 status, events
//! managed Secrets ┤  (caches)            └─ TokenCache ─> AWS (one call per group)
//! ServiceAccounts ┘   routing: which event enqueues which CR
//! credentials Secrets ─> credentials: SecretCredentials channels and grants
//! ```
//!
//! Files: `caches` (the stores and the reconciler's view of them), `routing` (event to
//! CR), `wake` (whom a change enqueues), `credentials` (watched credentials Secrets),
//! `shared` (watched shared pull secrets), `role_grants` (the role grants ConfigMap),
//! `tokens` (the AWS token adapter), `controller` (reconciles as the operator runs them),
//! `once` (`--once`), `inspect` (what a running operator shows of itself). Every part is
//! built before any watch starts: nothing is wired late.

pub(crate) mod caches;
pub(crate) mod controller;
pub(crate) mod credentials;
mod error;
mod inspect;
mod once;
pub(crate) mod role_grants;
pub(crate) mod routing;
pub(crate) mod shared;
pub(crate) mod tokens;
mod wake;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::admin::{Readiness, Routes, Server};
use crate::aws::env::AwsEnv;
use crate::aws::registry::RegistryClient;
use crate::config::Config;
use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, ClientConfig, ListParams};
use crate::metrics::Metrics;
use crate::reconcile::decide::spec::{EcrPullSecret, SecretRef};
use crate::reconcile::decide::validate::SpecPolicy;
use crate::reconcile::execute::events::EventRecorder;
use crate::reconcile::reconciler::{Reconciler, Settings};
use crate::reconcile::specs::Specs;
use crate::reconcile::tokens::TokenCache;
use crate::reconcile::verify::Verifier;
use crate::runtime::controller::{spawn_controller, Controller, ControllerConfig};
use crate::runtime::leader::{LeaderElector, LeaseConfig};
use crate::runtime::queue::WorkQueue;
use crate::runtime::shutdown_requested;
use crate::runtime::store::Store;
use crate::runtime::watch_set;
use crate::runtime::MetricsHandle;

pub(crate) use caches::Caches;
pub(crate) use credentials::CredentialSecrets;
pub use error::StartError;
pub use inspect::ReconcileFailed;
pub(crate) use shared::SharedSecrets;

/// The reconciler as the binary runs it.
pub(crate) type OperatorReconciler = Reconciler<tokens::AwsTokenFetcher, Caches>;

/// A started operator: the binary's handle for signals and shutdown, and what the
/// operator shows of itself (`inspect`).
pub struct Running {
    pub(crate) client: Client,
    pub(crate) caches: Caches,
    pub(crate) queue: WorkQueue<String>,
    pub(crate) reconciler: Arc<OperatorReconciler>,
    /// This operator's registry, which `/metrics` renders.
    pub(crate) metrics: Metrics,
    /// `true` while this instance may write (always, without leader election).
    pub leading: watch::Receiver<bool>,
    /// Where `/healthz` and `/readyz` listen (the resolved port); `None` when disabled.
    pub probe_addr: Option<SocketAddr>,
    /// Where `/metrics` listens (the resolved port); `None` when disabled.
    pub metrics_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    elector_stop: watch::Sender<bool>,
    elector: Option<JoinHandle<Result<(), crate::runtime::leader::LeaderError>>>,
    controller: Option<Controller>,
    _keep_leading: Option<watch::Sender<bool>>,
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

/// Connects, checks access, wires every part and starts serving. With `cfg.once`, the
/// controller is not started: call [`Running::run_once`].
pub async fn start(cfg: &Config, env: AwsEnv) -> Result<Running, StartError> {
    // This operator's registry: every part reports to it, /metrics renders it.
    let metrics = Metrics::default();
    let client = connect(cfg, &metrics).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Failures back off by the one default: backoff::FAILURE_BASE doubling to
    // FAILURE_MAX (2 s to 5 minutes).
    let queue: WorkQueue<String> = WorkQueue::new();
    // The CR cache exists before the parts that read it; its reflector starts with the
    // others, once every part is wired.
    let crs: Store<EcrPullSecret> = Store::new();
    let creds = CredentialSecrets::new(
        client.clone(),
        queue.clone(),
        crs.clone(),
        operator_credentials(cfg),
        shutdown_rx.clone(),
    );
    let (tokens, registry) = token_cache(cfg, &env, &creds, &metrics)?;
    let verifier = registry_checks(cfg, registry, &queue, &metrics);
    let specs = Arc::new(Specs::new(spec_policy(cfg)));
    let shared = SharedSecrets::new(
        client.clone(),
        queue.clone(),
        crs.clone(),
        shutdown_rx.clone(),
    );
    let operator_namespace = cfg.namespace.clone().or_else(service_account_namespace);
    let role_grants = watch_role_grants(
        &client,
        operator_namespace.as_deref(),
        &queue,
        &crs,
        &shutdown_rx,
    );
    let caches = Caches::new(crs, creds, shared, role_grants);
    let crs_changed = Arc::new(Notify::new());
    let _watches =
        routing::start_watches(&client, &queue, &caches, &specs, &crs_changed, &shutdown_rx);
    let reconciler = Arc::new(
        Reconciler::new(
            client.clone(),
            caches.clone(),
            tokens,
            EventRecorder::new(client.clone(), cfg.identity.clone()),
            Settings {
                operator_namespace: operator_namespace.clone(),
                default_region: cfg.region.clone(),
                ..Settings::default()
            },
            specs,
            metrics.clone(),
        )
        .with_verifier(Arc::new(verifier)),
    );
    spawn_pruner(&caches, &reconciler, crs_changed, &shutdown_rx);
    let readiness = caches_readiness(&caches, &shutdown_rx);
    let addrs = serve_admin(cfg, &readiness, &metrics, &shutdown_rx).await?;
    controller::spawn_queue_gauge(queue.clone(), metrics.clone(), shutdown_rx.clone());

    let mut running = Running::new(
        client,
        caches,
        queue,
        reconciler,
        metrics,
        addrs,
        shutdown_tx,
    );
    if cfg.once {
        return Ok(running);
    }
    running.elect(cfg, operator_namespace)?;
    running.start_controller(cfg.workers, shutdown_rx);
    Ok(running)
}

/// The registry checks (none with `--verify-registries=false`); a verdict lands beside
/// the reconciles, and the CRs that waited for it are queued to report it.
fn registry_checks(
    cfg: &Config,
    registry: RegistryClient,
    queue: &WorkQueue<String>,
    metrics: &Metrics,
) -> Verifier {
    let verifier = if cfg.verify_registries {
        tokens::registry_verifier(registry)
    } else {
        Verifier::disabled()
    }
    .with_metrics(metrics.clone());
    let queue = queue.clone();
    verifier.on_verdict(Arc::new(move |cr: &str| queue.add(cr.to_string())));
    verifier
}

/// The role grants ConfigMap in the operator's namespace, watched; none (every role
/// refused) when the operator does not know its namespace.
fn watch_role_grants(
    client: &Client,
    operator_namespace: Option<&str>,
    queue: &WorkQueue<String>,
    crs: &Store<EcrPullSecret>,
    shutdown: &watch::Receiver<bool>,
) -> role_grants::RoleGrants {
    match operator_namespace {
        Some(namespace) => role_grants::RoleGrants::watch(
            client,
            namespace,
            queue.clone(),
            crs.clone(),
            shutdown.clone(),
        ),
        None => role_grants::RoleGrants::none(),
    }
}

/// The Kubernetes client, checked: a wrong CA, a refused token, no CRD or no RBAC stop
/// the operator here, with a hint, rather than in a retry loop later.
async fn connect(cfg: &Config, metrics: &Metrics) -> Result<Client, StartError> {
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
        .map_err(StartError::ClientConfig)?
        .with_observer({
            let metrics = metrics.clone();
            Arc::new(move |verb: &str, code: u16| metrics.api_request(verb, code))
        });
    let first = ListParams {
        limit: Some(1),
        ..Default::default()
    };
    client
        .list::<EcrPullSecret>(&ECR_PULL_SECRETS.collection(None), &first)
        .await
        .map_err(|source| StartError::FirstList {
            url: client.url().to_string(),
            source,
        })?;
    Ok(client)
}

/// The shared token cache over AWS, with the operator-wide credentials Secret watched
/// for as long as the operator runs; and the registry client the checks use.
fn token_cache(
    cfg: &Config,
    env: &AwsEnv,
    creds: &CredentialSecrets,
    metrics: &Metrics,
) -> Result<(Arc<TokenCache<tokens::AwsTokenFetcher>>, RegistryClient), StartError> {
    use crate::aws::credentials::SourceKind;
    use crate::aws::setup::{Aws, AwsSettings};
    let global_secret = operator_credentials(cfg).map(|r| creds.get(&r));
    let source: SourceKind = cfg
        .aws_credentials_source
        .parse()
        .map_err(StartError::CredentialsSource)?;
    if cfg.region.is_none() {
        tracing::info!("AWS_REGION is unset: STS uses us-east-1 and every ECRPullSecret must name its region or registries");
    }
    let settings = AwsSettings {
        region: cfg
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_string()),
        source,
        http: crate::aws::http::HttpConfig::default(),
        allow_plain_http_registry: cfg.allow_plain_http_registry,
        certificate_seen: {
            let metrics = metrics.clone();
            crate::aws::context::CertificateObserver::new(move |not_after| {
                metrics.set_certificate_expiry("", "operator", not_after.unix_timestamp() as f64)
            })
        },
    };
    let aws = Aws::setup(env, settings, global_secret).map_err(StartError::Aws)?;
    let lookup_creds = creds.clone();
    let lookup: tokens::SecretLookup = Arc::new(move |r: &SecretRef| Some(lookup_creds.get(r)));
    let certificate_creds = creds.clone();
    let certificates: tokens::CertificateLookup =
        Arc::new(move |r: &SecretRef| Some(certificate_creds.certificate(r)));
    let registry = aws.registry.clone();
    let fetcher = tokens::AwsTokenFetcher::new(aws, lookup).with_certificates(certificates);
    let cache = Arc::new(TokenCache::new(fetcher).with_metrics(metrics.clone()));
    Ok((cache, registry))
}

/// The operator-wide credentials Secret, watched for as long as the operator runs.
fn operator_credentials(cfg: &Config) -> Option<SecretRef> {
    let (namespace, name) = cfg.credentials_secret.as_ref()?;
    Some(SecretRef {
        name: name.clone(),
        namespace: namespace.clone(),
    })
}

/// How long after a CR event the watches and token groups no CR needs are dropped: an
/// edit storm of CRs prunes once.
const PRUNE_DELAY: Duration = Duration::from_millis(500);

/// Prunes, [`PRUNE_DELAY`] after CRs change, the watches started on demand and the
/// token groups (and per-identity providers), all keyed by CR fields.
fn spawn_pruner(
    caches: &Caches,
    reconciler: &Arc<OperatorReconciler>,
    crs_changed: Arc<Notify>,
    shutdown: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    let caches = caches.clone();
    // Weak: the pruner must not keep the reconciler (and its caches) alive.
    let reconciler = Arc::downgrade(reconciler);
    let prune = move || {
        caches.prune_watches();
        if let Some(reconciler) = reconciler.upgrade() {
            reconciler.prune_tokens();
        }
    };
    watch_set::spawn_pruner(crs_changed, PRUNE_DELAY, prune, shutdown.clone())
}

/// What the flags say CRs may ask for.
fn spec_policy(cfg: &Config) -> SpecPolicy {
    SpecPolicy {
        default_registries: cfg.registries.clone(),
        min_interval_floor: cfg.min_refresh_interval,
        allowed_role_arns: cfg.allowed_role_arns.clone(),
    }
}

/// `/readyz` turns ready once every cache has its first full list.
fn caches_readiness(caches: &Caches, shutdown: &watch::Receiver<bool>) -> Readiness {
    let readiness = Readiness::new();
    let caches_ready = readiness.register("caches");
    let caches = caches.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        caches.synced().await;
        caches_ready.set_ready(true);
        tracing::info!("caches synced");
        // A dropped ReadyHandle reports not ready: hold it while the operator runs.
        shutdown_requested(&mut stop).await;
        drop(caches_ready);
    });
    readiness
}

/// Binds the probe and metrics listeners now, so a taken port fails startup, and serves
/// them until shutdown. Returns the bound addresses.
async fn serve_admin(
    cfg: &Config,
    readiness: &Readiness,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), StartError> {
    let render = {
        let metrics = metrics.clone();
        move || metrics.render()
    };
    let mut bound = Vec::new();
    for (addr, routes, what) in [
        (
            cfg.probe_addr,
            Routes::probes(readiness.clone()),
            "health probes",
        ),
        (cfg.metrics_addr, Routes::metrics_from(render), "metrics"),
    ] {
        let Some(addr) = addr else {
            bound.push(None);
            continue;
        };
        let server = Server::bind(addr)
            .await
            .map_err(|source| StartError::Serve { what, addr, source })?;
        let local = server.local_addr();
        tracing::info!(addr = ?local, "serving {what}");
        bound.push(local);
        let mut stop = shutdown.clone();
        tokio::spawn(server.serve(routes, async move {
            shutdown_requested(&mut stop).await;
        }));
    }
    Ok((bound[0], bound[1]))
}

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

// === impl Running ===

impl Running {
    /// The wired parts, not yet electing or reconciling; `addrs` are the probe and
    /// metrics listeners' bound addresses.
    fn new(
        client: Client,
        caches: Caches,
        queue: WorkQueue<String>,
        reconciler: Arc<OperatorReconciler>,
        metrics: Metrics,
        (probe_addr, metrics_addr): (Option<SocketAddr>, Option<SocketAddr>),
        shutdown_tx: watch::Sender<bool>,
    ) -> Running {
        let (elector_stop, _) = watch::channel(false);
        Running {
            client,
            caches,
            queue,
            reconciler,
            metrics,
            leading: watch::channel(true).1,
            probe_addr,
            metrics_addr,
            shutdown_tx,
            elector_stop,
            elector: None,
            controller: None,
            _keep_leading: None,
        }
    }

    /// With `--leader-elect`, runs the elector: only the leader reconciles, standbys keep
    /// their caches warm. Without it, this instance always leads.
    fn elect(
        &mut self,
        cfg: &Config,
        operator_namespace: Option<String>,
    ) -> Result<(), StartError> {
        if !cfg.leader_elect {
            self.metrics.set_leader(true);
            let (tx, rx) = watch::channel(true);
            self.leading = rx;
            self._keep_leading = Some(tx);
            return Ok(());
        }
        let namespace = cfg
            .leader_election_namespace
            .clone()
            .or(operator_namespace)
            .ok_or(StartError::LeaderElectionNamespace)?;
        let elector = LeaderElector::new(
            self.client.clone(),
            &namespace,
            &cfg.leader_election_id,
            &cfg.identity,
            LeaseConfig::default(),
        )
        .with_metrics(MetricsHandle::shared(self.metrics.clone()));
        let mut stop = self.elector_stop.subscribe();
        let (rx, task) = elector.spawn(async move {
            shutdown_requested(&mut stop).await;
        });
        self.leading = rx;
        self.elector = Some(task);
        Ok(())
    }

    /// Starts the workers, which reconcile once the caches are synced and while leading.
    fn start_controller(&mut self, workers: usize, shutdown: watch::Receiver<bool>) {
        let ready = {
            let caches = self.caches.clone();
            let mut leading = self.leading.clone();
            async move {
                caches.synced().await;
                let _ = leading.wait_for(|l| *l).await;
            }
        };
        let r = self.reconciler.clone();
        self.controller = Some(spawn_controller(
            self.queue.clone(),
            ControllerConfig::new("ecrpullsecret", workers),
            move |name: String| {
                let r = r.clone();
                async move { controller::timed_reconcile(&r, &name).await }
            },
            ready,
            shutdown,
        ));
    }

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
}
