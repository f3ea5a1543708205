//! The binary: parse settings, connect, wire the operator, handle signals.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ecr_creds_refresher::admin::{self, Readiness, Routes};
use ecr_creds_refresher::aws::credentials::SourceKind;
use ecr_creds_refresher::aws::env::AwsEnv;
use ecr_creds_refresher::aws::fetcher::{AwsTokenFetcher, SecretLookup};
use ecr_creds_refresher::aws::http::HttpConfig;
use ecr_creds_refresher::aws::setup::{Aws, AwsSettings};
use ecr_creds_refresher::config::{Config, ConfigError, LogFormat};
use ecr_creds_refresher::k8s::auth::SERVICE_ACCOUNT_DIR;
use ecr_creds_refresher::k8s::kind::ECR_PULL_SECRETS;
use ecr_creds_refresher::k8s::{Client, ClientConfig, ListParams};
use ecr_creds_refresher::metrics;
use ecr_creds_refresher::operator::{self, CredentialSecrets};
use ecr_creds_refresher::reconcile::events::EventRecorder;
use ecr_creds_refresher::reconcile::reconciler::{Reconciler, Settings};
use ecr_creds_refresher::reconcile::spec::{EcrPullSecret, SecretRef};
use ecr_creds_refresher::reconcile::tokens::TokenCache;
use ecr_creds_refresher::runtime::controller::{spawn_controller, ControllerConfig};
use ecr_creds_refresher::runtime::leader::{LeaderElector, LeaseConfig};
use ecr_creds_refresher::runtime::queue::WorkQueue;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A reconcile failure is retried from this delay, doubling to the cap.
const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(2);
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// `--once` gives up if the caches are not filled by then.
const ONCE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let cfg = match Config::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(cfg) => cfg,
        Err(e @ (ConfigError::Help | ConfigError::Version)) => {
            println!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ecr-creds-refresher: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ecr-creds-refresher: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cfg))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// Startup failures: printed once, exit code 2.
fn fatal(what: &str, e: impl std::fmt::Display) -> ExitCode {
    tracing::error!(error = %e, "{what}");
    eprintln!("ecr-creds-refresher: {what}: {e}");
    ExitCode::from(2)
}

async fn run(cfg: Config) -> ExitCode {
    let client_cfg = match &cfg.api_server {
        Some(url) => {
            ClientConfig::out_of_cluster(url, cfg.token_file.as_deref(), cfg.ca_file.as_deref())
        }
        None => ClientConfig::in_cluster(),
    };
    let client = match client_cfg.and_then(Client::new) {
        Ok(c) => c.with_observer(Arc::new(metrics::api_request)),
        Err(e) => return fatal("cannot configure the Kubernetes client", e),
    };
    // Fail closed and early: wrong CA, wrong token, no CRD or no RBAC all show here.
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
        return fatal(
            &format!("cannot list ECRPullSecrets at {}{hint}", client.url()),
            e,
        );
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let queue: WorkQueue<String> =
        WorkQueue::with_failure_backoff(FAILURE_BACKOFF_BASE, FAILURE_BACKOFF_MAX);
    let creds = CredentialSecrets::new(client.clone(), queue.clone(), shutdown_rx.clone());

    let fips = cfg.use_fips;
    let env = AwsEnv::from_lookup(move |k| {
        if fips && k == "AWS_USE_FIPS_ENDPOINT" {
            return Some("true".to_string());
        }
        std::env::var(k).ok()
    });
    let global_secret = cfg.credentials_secret.as_ref().map(|(namespace, name)| {
        creds.get(&SecretRef {
            name: name.clone(),
            namespace: namespace.clone(),
        })
    });
    let source: SourceKind = match cfg.aws_credentials_source.parse() {
        Ok(s) => s,
        Err(e) => return fatal("bad --aws-credentials-source", e),
    };
    let sts_region = cfg
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".to_string());
    let aws = match Aws::setup(
        &env,
        AwsSettings {
            region: sts_region,
            source,
            assume_role: None,
            http: HttpConfig::default(),
        },
        global_secret,
    ) {
        Ok(aws) => aws,
        Err(e) => return fatal("cannot configure AWS", e),
    };
    let lookup_creds = creds.clone();
    let lookup: SecretLookup = Arc::new(move |r: &SecretRef| Some(lookup_creds.get(r)));
    let tokens = Arc::new(TokenCache::new(AwsTokenFetcher::new(aws, lookup)));

    let (caches, _watches) = operator::start_watches(&client, &queue, &shutdown_rx);
    creds.set_crs(caches.crs.clone());
    let reconciler = Arc::new(Reconciler::new(
        client.clone(),
        caches.clone(),
        tokens,
        EventRecorder::new(client.clone(), cfg.identity.clone()),
        Settings {
            default_region: cfg.region.clone(),
            default_registries: cfg.registries.clone(),
            ..Settings::default()
        },
    ));

    // Probes and metrics: bind now so a taken port fails startup, serve until shutdown.
    let readiness = Readiness::new();
    let caches_ready = readiness.register("caches");
    {
        let caches = caches.clone();
        tokio::spawn(async move {
            caches.synced().await;
            caches_ready.set_ready(true);
            tracing::info!("caches synced");
        });
    }
    for (addr, routes, what) in [
        (
            cfg.probe_addr,
            Routes::probes(readiness.clone()),
            "health probes",
        ),
        (cfg.metrics_addr, Routes::metrics(), "metrics"),
    ] {
        let Some(addr) = addr else { continue };
        let server = match admin::Server::bind(addr).await {
            Ok(s) => s,
            Err(e) => return fatal(&format!("cannot serve {what} on {addr}"), e),
        };
        tracing::info!(%addr, "serving {what}");
        let mut stop = shutdown_rx.clone();
        tokio::spawn(server.serve(routes, async move {
            ecr_creds_refresher::runtime::shutdown_requested(&mut stop).await;
        }));
    }
    let _gauge = operator::spawn_queue_gauge(queue.clone(), shutdown_rx.clone());

    if cfg.once {
        return run_once(&client, &caches, &reconciler, shutdown_tx).await;
    }

    // Leader election: only the leader reconciles; standbys keep their caches warm.
    let (elector_stop_tx, elector_stop_rx) = watch::channel(false);
    let (mut leading, elector) = if cfg.leader_elect {
        let Some(namespace) = cfg
            .leader_election_namespace
            .clone()
            .or_else(|| cfg.namespace.clone())
            .or_else(|| {
                std::fs::read_to_string(format!("{SERVICE_ACCOUNT_DIR}/namespace"))
                    .ok()
                    .map(|s| s.trim().to_string())
            })
        else {
            return fatal(
                "leader election needs a namespace",
                "set --leader-election-namespace or POD_NAMESPACE",
            );
        };
        let elector = LeaderElector::new(
            client.clone(),
            &namespace,
            &cfg.leader_election_id,
            &cfg.identity,
            LeaseConfig::default(),
        );
        let mut stop = elector_stop_rx.clone();
        let (rx, task) = elector.spawn(async move {
            ecr_creds_refresher::runtime::shutdown_requested(&mut stop).await;
        });
        (rx, Some(task))
    } else {
        metrics::set_leader(true);
        let (tx, rx) = watch::channel(true);
        std::mem::forget(tx);
        (rx, None)
    };

    let ready = {
        let caches = caches.clone();
        let mut leading = leading.clone();
        async move {
            caches.synced().await;
            let _ = leading.wait_for(|l| *l).await;
        }
    };
    let r = reconciler.clone();
    let controller = spawn_controller(
        queue.clone(),
        ControllerConfig::new("ecrpullsecret", cfg.workers),
        move |name: String| {
            let r = r.clone();
            async move { operator::timed_reconcile(&r, &name).await }
        },
        ready,
        shutdown_rx.clone(),
    );

    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => return fatal("cannot install signal handlers", e),
    };
    let mut was_leading = *leading.borrow();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            changed = leading.changed() => {
                let now = changed.is_ok() && *leading.borrow();
                if was_leading && !now {
                    // Another replica may lead any moment: stop writing at once.
                    tracing::error!("lost leadership; stopping all writes and exiting");
                    controller.task.abort();
                    let _ = shutdown_tx.send(true);
                    return ExitCode::FAILURE;
                }
                was_leading = now;
            }
        }
    }

    tracing::info!(grace = ?cfg.shutdown_grace, "shutting down: draining in-flight reconciles (a second signal exits at once)");
    let _ = shutdown_tx.send(true);
    let mut task = controller.task;
    let drained = tokio::select! {
        r = tokio::time::timeout(cfg.shutdown_grace, &mut task) => r.is_ok(),
        _ = term.recv() => false,
        _ = int.recv() => false,
    };
    if !drained {
        tracing::warn!("shutdown: not drained; aborting in-flight work");
        task.abort();
    }
    // Only now, with no write in flight, let another replica take over.
    let _ = elector_stop_tx.send(true);
    if let Some(elector) = elector {
        match tokio::time::timeout(Duration::from_secs(5), elector).await {
            Ok(Ok(Ok(()))) => tracing::info!("leader lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the leader lease"),
            _ => tracing::warn!("leader election did not stop in time"),
        }
    }
    tracing::info!("stopped");
    if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(130)
    }
}

/// `--once`: reconcile every CR once, exit non-zero if any failed.
async fn run_once<F, S>(
    client: &Client,
    caches: &operator::Caches,
    reconciler: &Reconciler<F, S>,
    shutdown_tx: watch::Sender<bool>,
) -> ExitCode
where
    F: ecr_creds_refresher::reconcile::tokens::FetchToken,
    S: ecr_creds_refresher::reconcile::reconciler::ObservedState,
{
    if tokio::time::timeout(ONCE_SYNC_TIMEOUT, caches.synced())
        .await
        .is_err()
    {
        let _ = shutdown_tx.send(true);
        return fatal("--once", "the watch caches did not fill within 60 s");
    }
    let names = caches.cr_names();
    let mut failed = 0;
    let mut reconciled = Vec::new();
    for name in &names {
        match operator::timed_reconcile(reconciler, name).await {
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
        let path = ECR_PULL_SECRETS.object(None, name);
        let ready = match client.get::<EcrPullSecret>(&path).await {
            Ok(cr) => cr.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            }),
            Err(_) => false,
        };
        if ready {
            tracing::info!(cr = %name, "reconciled and Ready");
        } else {
            failed += 1;
            tracing::error!(cr = %name, "not Ready after reconcile (see its status)");
        }
    }
    let _ = shutdown_tx.send(true);
    tracing::info!(total = names.len(), failed, "--once finished");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
