//! `make demo`: the operator binary doing its main job against the in-repo emulators, with
//! no cluster and no AWS account. It starts a Kubernetes API emulator and a fake AWS in this
//! process, runs the operator as a child process pointed at them, applies an example
//! ECRPullSecret and shows what the operator wrote, then stops it with SIGTERM.
//!
//! Usage: demo <path to the ecr-creds-refresher binary>
#![forbid(unsafe_code)]

mod cluster;
mod edge;
mod merge;
mod say;
mod show;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use emulators::aws::{ecr_password, AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use emulators::operator::{Launch, OperatorChild};
use emulators::registry::Registry;
use emulators::wait::poll;
use serde_json::{json, Value};

use cluster::{
    create_namespace, ready_count, sa_has, secret_ok, POLL, REGISTRY, SECRET_NAME, WAIT,
};
use edge::{edge_device_pulls_with_a_certificate, OPERATOR_NAMESPACE};
use merge::merge_into_shared_secret;
use say::{detail, ms, section, step};
use show::{show_cr, show_secret, show_service_accounts, show_verification};

/// The example custom resource, as a user would `kubectl apply` it.
const EXAMPLE_CR: &str = r#"apiVersion: ecr.creds.dev/v1alpha1
kind: ECRPullSecret
metadata:
  name: team-registry
spec:
  secretName: ecr-pull
  # by name (globs allowed) ...
  namespaces: [team-a]
  # ... and by label: namespaces created later are covered at once
  namespaceSelector:
    matchLabels:
      ecr-pull: enabled
  serviceAccounts: [default, builder]
  registries: [123456789012.dkr.ecr.us-east-1.amazonaws.com]
"#;

fn main() -> ExitCode {
    let Some(binary) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: demo <path to the ecr-creds-refresher binary> (`make demo` builds it)");
        return ExitCode::from(2);
    };
    if !binary.is_file() {
        eprintln!(
            "demo: no operator binary at {} (build it with `cargo build --bin ecr-creds-refresher`)",
            binary.display()
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(binary) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    match outcome {
        Ok(()) => {
            println!("\nDemo finished: every step succeeded.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nDEMO FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(binary: PathBuf) -> Result<(), String> {
    println!("ecr-creds-refresher demo: the real operator binary against an in-process Kubernetes");
    println!(
        "API emulator and a fake AWS. No cluster, no AWS account, nothing leaves this machine.\n"
    );
    let (k8s, aws, registry) = start_peers().await?;
    prepare_cluster(&k8s)?;
    let (launch, mut operator) = start_operator(&binary, &k8s, &aws, registry.as_ref()).await?;
    apply_and_sync(&k8s, &operator).await?;
    if let Some(registry) = &registry {
        show_verification(&k8s, &operator, registry).await?;
    }

    show_secret(&k8s, "team-a")?;
    show_service_accounts(&k8s, "team-a")?;
    show_cr(&k8s)?;

    // The operator ran as its ServiceAccount under deploy/admission-policy.yaml.
    let denials = k8s.admission_denials();
    if !denials.is_empty() {
        return Err(format!(
            "the shipped admission policy denied the operator: {denials:?}"
        ));
    }
    section("Admission");
    println!("  deploy/admission-policy.yaml denied none of the operator's writes");

    merge_into_shared_secret(&k8s, &operator).await?;

    let ecr_calls = aws.calls().ecr;
    section("AWS");
    println!(
        "  ECR GetAuthorizationToken calls: {ecr_calls} for 4 namespaces and two CRs (one token per region, shared)"
    );

    edge_device_pulls_with_a_certificate(&k8s, &aws, &operator).await?;

    stop_operator(&mut operator).await?;
    run_once(&launch, &k8s).await?;

    section("What the operator logged");
    for line in operator.log_lines() {
        println!("  {line}");
    }
    k8s.shutdown().await;
    Ok(())
}

/// The operator's peers: the Kubernetes API emulator, the fake AWS, and (when Debian's
/// docker-registry is installed) a real registry that accepts the fake ECR's tokens.
async fn start_peers() -> Result<(K8sEmulator, AwsEmulator, Option<Registry>), String> {
    let k8s = K8sEmulator::start(EmulatorConfig::default())
        .await
        .map_err(|e| format!("cannot start the Kubernetes emulator: {e}"))?;
    // One password of ECR's size for every token, so the registry can accept it.
    let token_password = ecr_password();
    let aws = AwsEmulator::start(AwsEmulatorConfig {
        token_password: Some(token_password.clone()),
        ..AwsEmulatorConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the fake AWS: {e}"))?;
    step(&format!(
        "Kubernetes API emulator at {} (with the ECRPullSecret CRD), fake AWS (ECR, STS) at {}",
        k8s.url(),
        aws.url()
    ));
    // The registry is optional: without Debian's docker-registry and htpasswd the demo
    // runs without registry verification and says so.
    let registry = match Registry::start(&token_password) {
        Ok(registry) => {
            detail(&format!(
                "a real registry (docker-registry, htpasswd user AWS, TLS from a demo CA) at {} stands in for {REGISTRY}",
                registry.url
            ));
            Some(registry)
        }
        Err(e) => {
            detail(&format!("registry step skipped: {e}"));
            detail("(apt-get install docker-registry apache2-utils to see tokens verified at a real registry)");
            None
        }
    };
    Ok((k8s, aws, registry))
}

/// The cluster before the operator: one namespace by name, one by label, one not
/// targeted, and a ServiceAccount that already pulls from another registry.
fn prepare_cluster(k8s: &K8sEmulator) -> Result<(), String> {
    create_namespace(k8s, "team-a", json!({}))?;
    create_namespace(k8s, "team-b", json!({"ecr-pull": "enabled"}))?;
    create_namespace(k8s, "sandbox", json!({}))?;
    create_namespace(k8s, OPERATOR_NAMESPACE, json!({}))?;
    k8s.apply(
        "serviceaccounts",
        json!({"metadata": {"name": "default", "namespace": "team-a"},
               "imagePullSecrets": [{"name": "dockerhub-creds"}]}),
    )
    .map_err(|e| format!("cannot prepare ServiceAccount team-a/default: {e}"))?;
    k8s.apply(
        "serviceaccounts",
        json!({"metadata": {"name": "builder", "namespace": "team-a"}}),
    )
    .map_err(|e| format!("cannot create ServiceAccount team-a/builder: {e}"))?;
    step("Namespaces team-a, team-b (label ecr-pull=enabled) and sandbox (not targeted) exist.");
    detail(
        "team-a/default already pulls from `dockerhub-creds`: the operator must keep that entry",
    );
    Ok(())
}

/// Spawns the operator against the peers and waits for /readyz.
async fn start_operator(
    binary: &Path,
    k8s: &K8sEmulator,
    aws: &AwsEmulator,
    registry: Option<&Registry>,
) -> Result<(Launch, OperatorChild), String> {
    let registry_env: Vec<(String, String)> = registry
        .iter()
        .flat_map(|r| {
            [
                ("ECR_REGISTRY_ENDPOINT_URL".to_string(), r.url.clone()),
                ("AWS_CA_BUNDLE".to_string(), r.ca_file.display().to_string()),
            ]
        })
        .collect();
    let launch = Launch::new(binary, k8s.url(), aws.url())
        .pod_namespace(OPERATOR_NAMESPACE)
        .verify_registries(registry.is_some())
        .envs(registry_env);
    let mut operator = launch.spawn()?;
    let ready = operator.wait_ready(WAIT).await?;
    step(&format!(
        "Started {} (pid {}) --api-server {}: /readyz OK after {}",
        binary.display(),
        operator.pid,
        k8s.url(),
        ms(ready)
    ));
    Ok((launch, operator))
}

/// Applies the example CR and waits for it to cover the namespaces it selects, including
/// one created afterwards, and none it does not.
async fn apply_and_sync(k8s: &K8sEmulator, operator: &OperatorChild) -> Result<(), String> {
    let cr: Value = serde_yaml::from_str(EXAMPLE_CR)
        .map_err(|e| format!("the example CR is not valid YAML: {e}"))?;
    let applied_at = Instant::now();
    k8s.apply("ecrpullsecrets", cr)
        .map_err(|e| format!("the emulator refused the example ECRPullSecret: {e}"))?;
    step("Applied this ECRPullSecret:");
    for line in EXAMPLE_CR.lines() {
        println!("      {line}");
    }

    let synced = |names: &[&str]| {
        names.iter().all(|ns| {
            secret_ok(k8s, ns)
                && sa_has(k8s, ns, "default", SECRET_NAME)
                && ready_count(k8s) >= names.len() as u64
        })
    };
    poll(WAIT, POLL, async || {
        synced(&["team-a", "team-b"]).then_some(())
    })
    .await
    .ok_or_else(|| {
        format!(
            "team-a and team-b were not synced within {WAIT:?}; operator log:\n{}",
            operator.log_tail(20)
        )
    })?;
    step(&format!(
        "Synced team-a and team-b {} after the CR was applied (Secret written, ServiceAccounts patched, status Ready)",
        ms(applied_at.elapsed())
    ));

    // A namespace that appears later is covered without waiting for any timer.
    let created_at = Instant::now();
    create_namespace(k8s, "team-c", json!({"ecr-pull": "enabled"}))?;
    poll(WAIT, POLL, async || {
        synced(&["team-a", "team-b", "team-c"]).then_some(())
    })
        .await
        .ok_or_else(|| {
            format!(
                "namespace team-c (created after the CR) was not covered within {WAIT:?}; operator log:\n{}",
                operator.log_tail(20)
            )
        })?;
    step(&format!(
        "Created namespace team-c (label ecr-pull=enabled) AFTER the CR: covered {} later",
        ms(created_at.elapsed())
    ));
    if k8s.get("secrets", Some("sandbox"), SECRET_NAME).is_some() {
        return Err(
            "the operator wrote a Secret into `sandbox`, which the CR does not target".into(),
        );
    }
    detail("sandbox (neither listed nor labelled) got nothing");
    Ok(())
}

/// SIGTERM: the operator must drain and exit 0.
async fn stop_operator(operator: &mut OperatorChild) -> Result<(), String> {
    let stop_at = Instant::now();
    let status = operator.terminate(Duration::from_secs(25)).await?;
    if !status.success() {
        return Err(format!(
            "the operator exited with {status} after SIGTERM (expected 0); its log:\n{}",
            operator.log_tail(20)
        ));
    }
    section("Shutdown");
    println!(
        "  SIGTERM: the operator drained and exited with status 0 in {}",
        ms(stop_at.elapsed())
    );
    Ok(())
}

/// `--once` against the same emulators, as a CronJob or CI would run it: every
/// ECRPullSecret reconciled once (all are in sync: nothing to write), exit 0 when all
/// are Ready.
async fn run_once(launch: &Launch, k8s: &K8sEmulator) -> Result<(), String> {
    let started = Instant::now();
    let mut once = launch
        .clone()
        .pod_name("ecr-creds-refresher-once")
        .args(["--once"])
        .spawn()?;
    let status = once.wait_exit(WAIT).await.ok_or_else(|| {
        format!(
            "--once did not exit within {WAIT:?}; its log:\n{}",
            once.log_tail(20)
        )
    })?;
    if !status.success() {
        return Err(format!(
            "--once exited with {status}; its log:\n{}",
            once.log_tail(20)
        ));
    }
    section("--once");
    println!(
        "  ecr-creds-refresher --once --api-server {}: exit 0 after {} (every ECRPullSecret reconciled and Ready)",
        k8s.url(),
        ms(started.elapsed())
    );
    Ok(())
}
