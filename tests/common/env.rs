//! The operator in-process: the façade's `start`, exactly what the binary runs, over the
//! emulators. [`Env`] owns both emulators and one operator and knows how to wait for the
//! operator's results; [`start_operator`] starts one over emulators a test set up itself
//! (the soak, the log scrubbing, RBAC by use).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use emulators::aws::{AwsEmulator, AwsEmulatorConfig, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use emulators::k8s::{EmulatorConfig, K8sEmulator, RequestRecord};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use ecr_creds_refresher::{AwsEnv, Config, Running};

use super::{
    apply_cr, http, http_as_admin, init_logs, is_write, poll, pull_secret_names, ready_condition,
    wait_for, wait_until, CR_RESOURCE, OPERATOR_NAMESPACE, POLL, REGION, WAIT,
};

/// Watch lag for the whole run from `ECR_TEST_WATCH_LAG_MS` (`make test` runs the
/// reconcile suites at 0, 200 ms and 2 s): every event trails its write by that much plus
/// up to a fifth more at random, as a busy API server's watch cache does.
pub(crate) fn watch_lag_from_env() -> emulators::k8s::WatchLag {
    let ms: u64 = std::env::var("ECR_TEST_WATCH_LAG_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    emulators::k8s::WatchLag {
        fixed_ms: ms,
        random_ms: ms / 5,
        seed: 7,
        ..Default::default()
    }
}

/// How to start the operator (and, for [`Env`], the emulators).
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The operator's `AWS_REGION`; `None` leaves it unset.
    pub region: Option<String>,
    /// Lifetime of the fake ECR's tokens (real ECR: 12 h). [`Env`] only.
    pub token_lifetime: Duration,
    /// Extra operator environment (e.g. `AWS_CREDENTIALS_SECRET_NAME`).
    pub env: Vec<(String, String)>,
    /// `--leader-elect` with the Lease in this namespace.
    pub leader_election_namespace: Option<String>,
    /// `--min-refresh-interval`; `None` keeps the operator's default (30s).
    pub min_refresh_interval: Option<String>,
    /// Serve `/metrics` on a loopback port (`Running::metrics_addr`); off by default.
    pub metrics: bool,
    /// More operator flags.
    pub args: Vec<String>,
    /// The CRD the emulator enforces; `None` is the shipped `crd.yaml`. [`Env`] only.
    pub crd: Option<String>,
    /// Check tokens at the registries. Off by default: the fake account's registry hosts
    /// do not resolve here; `registry_verify` turns it on against a real registry.
    pub verify_registries: bool,
    /// The password of every token the fake ECR issues; `None`: a new one per call.
    /// [`Env`] only.
    pub token_password: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            region: Some(REGION.to_string()),
            token_lifetime: Duration::from_secs(12 * 3600),
            env: Vec::new(),
            leader_election_namespace: None,
            // Tests refresh short-lived fake tokens every second or so.
            min_refresh_interval: Some("1s".into()),
            metrics: false,
            args: Vec::new(),
            crd: None,
            verify_registries: false,
            token_password: None,
        }
    }
}

// === impl Options ===

impl Options {
    /// The operator's flags and environment, as the binary would read them, against
    /// these emulators; AWS gets static keys from the environment.
    pub(crate) fn operator_config(
        &self,
        k8s: &K8sEmulator,
        aws: &AwsEmulator,
        once: bool,
    ) -> (Config, AwsEnv) {
        let mut args = vec![
            "--api-server".to_string(),
            k8s.url(),
            "--health-probe-bind-address".into(),
            "127.0.0.1:0".into(),
            "--metrics-bind-address".into(),
            if self.metrics { "127.0.0.1:0" } else { "0" }.into(),
        ];
        if let Some(floor) = &self.min_refresh_interval {
            args.extend(["--min-refresh-interval".into(), floor.clone()]);
        }
        args.extend(self.args.iter().cloned());
        if !self.verify_registries {
            args.push("--verify-registries=false".into());
        }
        if once {
            args.push("--once".into());
        }
        if let Some(ns) = &self.leader_election_namespace {
            args.extend([
                "--leader-elect".into(),
                "--leader-election-namespace".into(),
                ns.clone(),
            ]);
        }
        let mut vars: BTreeMap<String, String> = self.env.iter().cloned().collect();
        if let Some(region) = &self.region {
            vars.insert("AWS_REGION".into(), region.clone());
        }
        vars.insert("POD_NAME".into(), "ecr-creds-refresher-test".into());
        // Credentials Secrets in the operator's namespace need no grant.
        vars.entry("POD_NAMESPACE".into())
            .or_insert_with(|| OPERATOR_NAMESPACE.into());
        let cfg = Config::parse(args, |k| vars.get(k).cloned()).expect("valid operator flags");
        let aws_url = aws.url();
        // A configured credentials Secret takes precedence over these keys.
        let mut pairs: Vec<(&str, &str)> = vec![
            ("AWS_ENDPOINT_URL", &aws_url),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        if let Some(region) = &self.region {
            pairs.push(("AWS_REGION", region));
        }
        // The extra environment reaches the AWS side too (AWS_CA_BUNDLE, endpoints).
        pairs.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        (cfg, AwsEnv::from_pairs(&pairs))
    }
}

/// Starts an operator over `k8s` and `aws`; the caller shuts it down.
pub(crate) async fn start_operator(
    k8s: &K8sEmulator,
    aws: &AwsEmulator,
    options: &Options,
) -> Running {
    let (cfg, aws_env) = options.operator_config(k8s, aws, false);
    ecr_creds_refresher::start(&cfg, aws_env)
        .await
        .expect("operator starts")
}

/// Starts an operator in `--once` mode over `k8s` and `aws`: call `run_once` on it.
pub(crate) async fn start_once(k8s: &K8sEmulator, aws: &AwsEmulator, options: &Options) -> Running {
    let (cfg, aws_env) = options.operator_config(k8s, aws, true);
    ecr_creds_refresher::start(&cfg, aws_env)
        .await
        .expect("operator starts in --once mode")
}

/// Both emulators and (when started) one operator.
pub(crate) struct Env {
    pub k8s: K8sEmulator,
    pub aws: AwsEmulator,
    pub options: Options,
    operator: Option<Running>,
}

// === impl Env ===

impl Env {
    /// Emulators with default options and a running operator.
    pub(crate) async fn start() -> Env {
        let mut env = Env::emulators(Options::default()).await;
        env.start_operator().await;
        env
    }

    /// Emulators only: set up state first, then [`Env::start_operator`].
    pub(crate) async fn emulators(options: Options) -> Env {
        init_logs();
        let mut config = EmulatorConfig::default();
        if let Some(crd) = &options.crd {
            config.crds = vec![crd.clone()];
        }
        config.watch_lag = watch_lag_from_env();
        let k8s = K8sEmulator::start(config)
            .await
            .expect("start the Kubernetes emulator");
        let aws = AwsEmulator::start(AwsEmulatorConfig {
            token_lifetime: options.token_lifetime,
            token_password: options.token_password.clone(),
            ..Default::default()
        })
        .await
        .expect("start the AWS emulator");
        Env {
            k8s,
            aws,
            options,
            operator: None,
        }
    }

    /// The operator's flags and environment, as the binary would read them.
    pub(crate) fn operator_config(&self, once: bool) -> (Config, AwsEnv) {
        self.options.operator_config(&self.k8s, &self.aws, once)
    }

    /// Starts an operator (the controller runs; no leader election).
    pub(crate) async fn start_operator(&mut self) {
        assert!(self.operator.is_none(), "an operator is already running");
        self.operator = Some(start_operator(&self.k8s, &self.aws, &self.options).await);
    }

    /// Starts one more operator with the same configuration and hands it over (replicas
    /// for leader election); the caller shuts it down.
    pub(crate) async fn spawn_operator(&self, identity: &str) -> Running {
        let (mut cfg, aws_env) = self.operator_config(false);
        cfg.identity = identity.to_string();
        ecr_creds_refresher::start(&cfg, aws_env)
            .await
            .expect("operator starts")
    }

    /// Starts an operator in `--once` mode: call `run_once` on it.
    pub(crate) async fn start_once(&self) -> Running {
        start_once(&self.k8s, &self.aws, &self.options).await
    }

    /// Stops the running operator (drains in-flight work).
    pub(crate) async fn stop_operator(&mut self) {
        if let Some(running) = self.operator.take() {
            running
                .shutdown(Duration::from_secs(5), std::future::pending())
                .await;
        }
    }

    /// The operator's `/metrics` text, as a scrape sees it (needs [`Options::metrics`]).
    pub(crate) async fn metrics(&self) -> String {
        let addr = self
            .operator()
            .metrics_addr
            .expect("Options::metrics serves /metrics");
        super::get(addr, "/metrics")
            .await
            .unwrap_or_else(|e| panic!("scrape: {e}"))
            .text()
    }

    pub(crate) fn operator(&self) -> &Running {
        self.operator.as_ref().expect("operator running")
    }

    pub(crate) async fn shutdown(mut self) {
        self.stop_operator().await;
        self.k8s.shutdown().await;
    }

    // --- state set-up, straight into the emulator (never logged as requests) ---

    /// Creates or replaces a namespace with these labels. With an operator running, waits
    /// until its cache has the change, so the next step of the test builds on it (a CR
    /// applied next sees the namespace, as it would after a `kubectl apply` minutes ago).
    pub(crate) async fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut obj = self
            .k8s
            .get("namespaces", None, name)
            .unwrap_or_else(|| json!({"apiVersion": "v1", "kind": "Namespace"}));
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["labels"] = json!(wanted);
        self.k8s.apply("namespaces", obj).expect("valid namespace");
        if let Some(running) = &self.operator {
            let seen = poll(WAIT, POLL, async || {
                (running.namespace_labels(name).as_ref() == Some(&wanted)).then_some(())
            })
            .await;
            if seen.is_none() {
                // Whether the operator's namespace watch reached the server at all, and
                // when: a rare miss is then diagnosable from CI's log alone.
                let watches: Vec<String> = self
                    .k8s
                    .requests_timed()
                    .into_iter()
                    .filter(|(_, r)| r.verb == "watch" && r.resource == "namespaces")
                    .map(|(t, r)| {
                        // RFC 3339 UTC, as the log lines print time: to line them up.
                        let at = time::OffsetDateTime::from(t).format(&Rfc3339);
                        format!("{} at {}", r.code, at.unwrap_or_default())
                    })
                    .collect();
                panic!(
                    "timed out after {WAIT:?} waiting for the operator's cache to see \
                     namespace {name}; cached: {:?}; namespace watches answered: \
                     {watches:?}; open watches {}, open connections {}",
                    running.namespace_labels(name),
                    self.k8s.open_watches(),
                    self.k8s.open_connections()
                );
            }
        }
    }

    /// Creates or replaces an ECRPullSecret; a replaced one keeps its status and
    /// finalizers (use [`Env::patch_cr`] for spec edits racing the operator).
    pub(crate) fn cr(&self, name: &str, spec: Value) {
        apply_cr(&self.k8s, name, spec);
    }

    /// Creates or replaces a ServiceAccount with these `imagePullSecrets`.
    pub(crate) fn service_account(&self, ns: &str, name: &str, pull_secrets: &[&str]) {
        let mut obj = self.k8s.get("serviceaccounts", Some(ns), name).unwrap_or_else(
            || json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
        );
        obj["imagePullSecrets"] = json!(pull_secrets
            .iter()
            .map(|n| json!({"name": n}))
            .collect::<Vec<_>>());
        self.k8s.apply("serviceaccounts", obj).expect("valid SA");
    }

    /// A foreign (not operator-made) Secret. One that holds AWS keys stands for keys IAM
    /// issued: the fake AWS learns them (a key id it knows keeps its first secret, so a
    /// second Secret with another secret for the same id holds a wrong key).
    pub(crate) fn foreign_secret(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        data: BTreeMap<&str, String>,
    ) {
        if let (Some(id), Some(secret)) = (
            data.get("AWS_ACCESS_KEY_ID"),
            data.get("AWS_SECRET_ACCESS_KEY"),
        ) {
            match data.get("AWS_SESSION_TOKEN") {
                Some(token) => self.aws.add_session_key(id, secret, token),
                None => self.aws.add_key(id, secret),
            };
        }
        let data: BTreeMap<&str, String> =
            data.into_iter().map(|(k, v)| (k, B64.encode(v))).collect();
        self.k8s
            .apply(
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": name, "namespace": ns},
                       "type": type_, "data": data}),
            )
            .expect("valid Secret");
    }

    /// A merge patch of the CR over HTTP, as kubectl does (bumps generation on spec edits,
    /// never touches status), by the cluster admin.
    pub(crate) async fn patch_cr(&self, name: &str, merge: Value) {
        let (code, body) = http_as_admin(
            self.k8s.addr(),
            "PATCH",
            &format!("/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets/{name}"),
            Some(("application/merge-patch+json", &merge)),
        )
        .await;
        assert_eq!(code, 200, "patching CR {name}: {body}");
    }

    // --- reading what the operator wrote ---

    pub(crate) fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.k8s.get("secrets", Some(ns), name)
    }

    pub(crate) fn sa(&self, ns: &str, name: &str) -> Option<Value> {
        self.k8s.get("serviceaccounts", Some(ns), name)
    }

    /// The names in a ServiceAccount's `imagePullSecrets`, in order.
    pub(crate) fn pull_secrets(&self, ns: &str, sa: &str) -> Vec<String> {
        self.sa(ns, sa)
            .map(|sa| pull_secret_names(&sa))
            .unwrap_or_default()
    }

    pub(crate) fn get_cr(&self, name: &str) -> Option<Value> {
        self.k8s.get(CR_RESOURCE, None, name)
    }

    /// The CR's Ready condition.
    pub(crate) fn ready(&self, name: &str) -> Option<Value> {
        let cr = self.get_cr(name)?;
        ready_condition(&cr).cloned()
    }

    /// Waits for Ready=True observed at the CR's current generation; returns the CR.
    pub(crate) async fn wait_ready(&self, name: &str) -> Value {
        self.wait_condition(name, "True", "TokenFetched").await
    }

    /// Waits for the Ready condition to have this status and reason at the current
    /// generation; returns the CR.
    pub(crate) async fn wait_condition(&self, name: &str, status: &str, reason: &str) -> Value {
        wait_for(format!("CR {name} Ready={status} {reason}"), WAIT, || {
            let cr = self.get_cr(name).ok_or("CR absent")?;
            let generation = cr["metadata"]["generation"].clone();
            match ready_condition(&cr) {
                Some(c)
                    if c["status"] == status
                        && c["reason"] == reason
                        && cr["status"]["observedGeneration"] == generation =>
                {
                    Ok(cr)
                }
                _ => Err(format!("status: {}", cr["status"])),
            }
        })
        .await
    }

    /// Waits for Ready=True with exactly `synced` namespaces synced and none failed (a
    /// CR can be Ready over fewer namespaces while new ones reach the cache); the CR.
    pub(crate) async fn wait_synced(&self, name: &str, synced: usize) -> Value {
        wait_for(
            format!("CR {name} Ready over {synced} namespaces"),
            WAIT,
            || {
                let cr = self.get_cr(name).ok_or("CR absent")?;
                let ready = ready_condition(&cr).is_some_and(|c| c["status"] == "True");
                if ready
                    && cr["status"]["syncedNamespaces"] == synced
                    && cr["status"]["failedNamespaces"] == 0
                {
                    Ok(cr)
                } else {
                    Err(format!("status: {}", cr["status"]))
                }
            },
        )
        .await
    }

    /// Waits until the operator's Secret `name` exists in `ns`; returns it.
    pub(crate) async fn wait_secret(&self, ns: &str, name: &str) -> Value {
        wait_for(format!("Secret {ns}/{name}"), WAIT, || {
            self.secret(ns, name).ok_or("absent".to_string())
        })
        .await
    }

    /// Waits until the operator settles: caches synced, nothing queued or in flight, and
    /// no write request for `quiet`. Then every reconcile the test triggered has run.
    pub(crate) async fn settle(&self, quiet: Duration) {
        let running = self.operator();
        let mut last = (usize::MAX, Instant::now());
        wait_until(format!("the operator quiet for {quiet:?}"), WAIT, || {
            let writes = self.k8s.requests().iter().filter(|r| is_write(r)).count();
            let idle = running.is_idle();
            if writes != last.0 || !idle {
                last = (writes, Instant::now());
                false
            } else {
                last.1.elapsed() >= quiet
            }
        })
        .await;
    }

    /// Runs the operator's reconciler for `name` directly, `times` times, each expected
    /// to succeed: a deterministic way to drive reconciles that should be no-ops.
    pub(crate) async fn reconcile_directly(&self, name: &str, times: usize) {
        for _ in 0..times {
            self.operator()
                .reconcile(name)
                .await
                .unwrap_or_else(|e| panic!("reconcile {name}: {e}"));
        }
    }

    /// Requests (logged since the last `clear_requests`) matching `f`.
    pub(crate) fn requests_where(&self, f: impl Fn(&RequestRecord) -> bool) -> Vec<RequestRecord> {
        self.k8s.requests().into_iter().filter(|r| f(r)).collect()
    }

    /// Creates, updates, patches and deletes of `resource` (plural) in the log.
    pub(crate) fn writes_of(&self, resource: &str) -> Vec<RequestRecord> {
        self.requests_where(|r| r.resource == resource && is_write(r))
    }

    /// Events the operator recorded about CR `name`, in every namespace.
    pub(crate) fn events_for(&self, name: &str) -> Vec<Value> {
        self.k8s
            .list("events", None)
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == name)
            .collect()
    }
}
