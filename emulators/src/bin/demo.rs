//! `make demo`: the operator binary doing its main job against the in-repo emulators, with
//! no cluster and no AWS account. It starts a Kubernetes API emulator and a fake AWS in this
//! process, runs the operator as a child process pointed at them, applies an example
//! ECRPullSecret and shows what the operator wrote, then stops it with SIGTERM.
//!
//! Usage: demo <path to the ecr-creds-refresher binary>
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use emulators::aws::{ecr_password, AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator};
use emulators::operator::Launch;
use emulators::registry::Registry;
use emulators::wait::poll;
use serde_json::{json, Value};

/// Every wait is bounded: the demo fails with a message instead of hanging.
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

const CR_NAME: &str = "team-registry";
const SECRET_NAME: &str = "ecr-pull";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
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

    // The cluster before the operator: one namespace by name, one by label, one not
    // targeted, and a ServiceAccount that already pulls from another registry.
    create_namespace(&k8s, "team-a", json!({}))?;
    create_namespace(&k8s, "team-b", json!({"ecr-pull": "enabled"}))?;
    create_namespace(&k8s, "sandbox", json!({}))?;
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

    let registry_env: Vec<(String, String)> = registry
        .iter()
        .flat_map(|r| {
            [
                ("ECR_REGISTRY_ENDPOINT_URL".to_string(), r.url.clone()),
                ("AWS_CA_BUNDLE".to_string(), r.ca_file.display().to_string()),
            ]
        })
        .collect();
    let launch = Launch::new(&binary, k8s.url(), aws.url())
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
            secret_ok(&k8s, ns)
                && sa_has(&k8s, ns, "default", SECRET_NAME)
                && ready_count(&k8s) >= names.len() as u64
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
    create_namespace(&k8s, "team-c", json!({"ecr-pull": "enabled"}))?;
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

    run_once(&launch, &k8s).await?;

    section("What the operator logged");
    for line in operator.log_lines() {
        println!("  {line}");
    }
    k8s.shutdown().await;
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

/// The token's check at the real registry: RegistryVerified=True.
async fn show_verification(
    k8s: &K8sEmulator,
    operator: &emulators::operator::OperatorChild,
    registry: &Registry,
) -> Result<(), String> {
    let verified = poll(WAIT, POLL, async || {
        let cr = k8s.get("ecrpullsecrets", None, CR_NAME)?;
        condition(&cr, "RegistryVerified").filter(|c| c["status"] != "Unknown")
    })
    .await
    .ok_or_else(|| {
        format!(
            "no registry check reported within {WAIT:?}; operator log:\n{}",
            operator.log_tail(20)
        )
    })?;
    if verified["status"] != "True" {
        return Err(format!(
            "the registry did not accept the token: {}; registry log:\n{}",
            verified,
            registry.log()
        ));
    }
    step(&format!(
        "The token was verified at the registry: GET /v2/ answered 200 (RegistryVerified=True: {})",
        verified["message"].as_str().unwrap_or_default()
    ));
    Ok(())
}

/// The platform team's shared pull secret: a Docker Hub entry the operator must keep.
const SHARED_SECRET: &str = "pull-secret";
const DOCKER_HUB_ENTRY: &str = r#"{"auth": "ZG9ja2VyOmh1Yg==", "email": "platform@example.com"}"#;
const MERGE_CR: &str = r#"apiVersion: ecr.creds.dev/v1alpha1
kind: ECRPullSecret
metadata:
  name: shared-registry
spec:
  secretName: pull-secret
  namespaces: [platform]
  registries: [123456789012.dkr.ecr.us-east-1.amazonaws.com]
  secretPolicy: Merge     # maintain only this registry's entry in someone else's Secret
"#;

/// `secretPolicy: Merge`: our ECR entry into a shared pull secret, its Docker Hub entry
/// kept byte for byte.
async fn merge_into_shared_secret(
    k8s: &K8sEmulator,
    operator: &emulators::operator::OperatorChild,
) -> Result<(), String> {
    create_namespace(k8s, "platform", json!({}))?;
    let config = format!(r#"{{"auths":{{"https://index.docker.io/v1/":{DOCKER_HUB_ENTRY}}}}}"#);
    k8s.apply(
        "secrets",
        json!({"metadata": {"name": SHARED_SECRET, "namespace": "platform",
                            "annotations": {"owner": "platform-team"}},
               "type": "kubernetes.io/dockerconfigjson",
               "data": {".dockerconfigjson": STANDARD.encode(&config)}}),
    )
    .map_err(|e| format!("cannot create the shared pull secret: {e}"))?;
    step("Namespace platform holds a shared pull secret `pull-secret` with a Docker Hub entry.");
    let cr: Value = serde_yaml::from_str(MERGE_CR)
        .map_err(|e| format!("the merge CR is not valid YAML: {e}"))?;
    k8s.apply("ecrpullsecrets", cr)
        .map_err(|e| format!("the emulator refused the merge ECRPullSecret: {e}"))?;
    step("Applied this ECRPullSecret:");
    for line in MERGE_CR.lines() {
        println!("      {line}");
    }
    let merged = poll(WAIT, POLL, async || {
        let s = k8s.get("secrets", Some("platform"), SHARED_SECRET)?;
        let d = dockerconfig(&s).ok()?;
        d["auths"][REGISTRY]["auth"].as_str()?;
        Some(s)
    })
    .await
    .ok_or_else(|| {
        format!(
            "the ECR entry was not merged into platform/pull-secret within {WAIT:?}; operator log:\n{}",
            operator.log_tail(20)
        )
    })?;
    let raw = STANDARD
        .decode(
            merged["data"][".dockerconfigjson"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| format!("the shared pull secret is not base64: {e}"))?;
    let text = String::from_utf8_lossy(&raw).to_string();
    if !text.contains(DOCKER_HUB_ENTRY) {
        return Err(format!(
            "the Docker Hub entry was not kept byte for byte: {text}"
        ));
    }
    section(&format!(
        "Secret platform/{SHARED_SECRET} after the merge (passwords masked)"
    ));
    let mut config = dockerconfig(&merged)?;
    if let Some(auths) = config["auths"].as_object_mut() {
        for (host, entry) in auths.iter_mut() {
            let note = if host == REGISTRY {
                "added by the operator"
            } else {
                "kept byte for byte"
            };
            let user = entry["username"].as_str().unwrap_or("");
            let auth = entry["auth"].as_str().map(mask).unwrap_or_default();
            println!("  auths[{host}]: username {user:?} auth {auth}   # {note}");
        }
    }
    println!("  annotations:");
    print_map(&merged["metadata"]["annotations"], "    ");
    println!("  (only data[.dockerconfigjson] and ecr.creds.dev/merged-hosts changed; the rest is the owner's)");
    let denials = k8s.admission_denials();
    if !denials.is_empty() {
        return Err(format!(
            "the shipped admission policy denied the merge: {denials:?}"
        ));
    }
    Ok(())
}

fn create_namespace(k8s: &K8sEmulator, name: &str, labels: Value) -> Result<(), String> {
    k8s.apply(
        "namespaces",
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .map(|_| ())
    .map_err(|e| format!("cannot create namespace {name}: {e}"))
}

/// The Secret exists, has the right type and holds a non-empty credential for the registry.
fn secret_ok(k8s: &K8sEmulator, ns: &str) -> bool {
    k8s.get("secrets", Some(ns), SECRET_NAME)
        .and_then(|s| dockerconfig(&s).ok())
        .is_some_and(|d| {
            d["auths"][REGISTRY]["auth"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        })
}

fn sa_has(k8s: &K8sEmulator, ns: &str, sa: &str, secret: &str) -> bool {
    k8s.get("serviceaccounts", Some(ns), sa).is_some_and(|s| {
        s["imagePullSecrets"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["name"] == secret))
    })
}

fn ready_count(k8s: &K8sEmulator) -> u64 {
    let Some(cr) = k8s.get("ecrpullsecrets", None, CR_NAME) else {
        return 0;
    };
    let ready = cr["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    if ready {
        cr["status"]["syncedNamespaces"].as_u64().unwrap_or(0)
    } else {
        0
    }
}

/// The decoded `.dockerconfigjson` of a Secret.
fn dockerconfig(secret: &Value) -> Result<Value, String> {
    if secret["type"] != "kubernetes.io/dockerconfigjson" {
        return Err(format!("unexpected Secret type {}", secret["type"]));
    }
    let b64 = secret["data"][".dockerconfigjson"]
        .as_str()
        .ok_or("no .dockerconfigjson key")?;
    let raw = STANDARD
        .decode(b64)
        .map_err(|e| format!(".dockerconfigjson is not base64: {e}"))?;
    serde_json::from_slice(&raw).map_err(|e| format!(".dockerconfigjson is not JSON: {e}"))
}

/// First four characters, then stars: enough to see it is there, not enough to use it.
fn mask(s: &str) -> String {
    let head: String = s.chars().take(4).collect();
    format!("{head}****")
}

fn show_secret(k8s: &K8sEmulator, ns: &str) -> Result<(), String> {
    let secret = k8s
        .get("secrets", Some(ns), SECRET_NAME)
        .ok_or_else(|| format!("Secret {ns}/{SECRET_NAME} vanished"))?;
    section(&format!(
        "Secret {ns}/{SECRET_NAME} (kubectl get secret -n {ns} {SECRET_NAME} -o yaml, decoded)"
    ));
    println!("  type: {}", secret["type"].as_str().unwrap_or("?"));
    println!("  labels:");
    print_map(&secret["metadata"]["labels"], "    ");
    println!("  annotations:");
    print_map(&secret["metadata"]["annotations"], "    ");
    let mut config = dockerconfig(&secret)?;
    if let Some(auths) = config["auths"].as_object_mut() {
        for entry in auths.values_mut() {
            for key in ["password", "auth"] {
                if let Some(v) = entry[key].as_str().map(mask) {
                    entry[key] = Value::String(v);
                }
            }
        }
    }
    println!("  data[.dockerconfigjson], base64-decoded (password and auth masked):");
    let pretty = serde_json::to_string_pretty(&config).unwrap_or_default();
    for line in pretty.lines() {
        println!("    {line}");
    }
    let others: Vec<String> = ["team-b", "team-c"]
        .iter()
        .filter(|n| secret_ok(k8s, n))
        .map(|n| format!("{n}/{SECRET_NAME}"))
        .collect();
    println!("  (the same Secret is in {})", others.join(" and "));
    Ok(())
}

fn show_service_accounts(k8s: &K8sEmulator, ns: &str) -> Result<(), String> {
    for sa in ["default", "builder"] {
        let obj = k8s
            .get("serviceaccounts", Some(ns), sa)
            .ok_or_else(|| format!("ServiceAccount {ns}/{sa} vanished"))?;
        section(&format!("ServiceAccount {ns}/{sa}"));
        let names: Vec<String> = obj["imagePullSecrets"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        println!("  imagePullSecrets:");
        for n in &names {
            let note = if n == SECRET_NAME {
                "added by the operator"
            } else {
                "was already there: kept"
            };
            println!("    - name: {n:<16} # {note}");
        }
        if !names.iter().any(|n| n == SECRET_NAME) {
            return Err(format!(
                "ServiceAccount {ns}/{sa} did not get {SECRET_NAME}"
            ));
        }
        if sa == "default" && !names.iter().any(|n| n == "dockerhub-creds") {
            return Err(format!(
                "ServiceAccount {ns}/{sa} lost its dockerhub-creds entry"
            ));
        }
        println!("  annotations:");
        print_map(&obj["metadata"]["annotations"], "    ");
    }
    detail("the annotation records what the operator owns, so it only ever removes its own entry");
    Ok(())
}

fn show_cr(k8s: &K8sEmulator) -> Result<(), String> {
    let cr = k8s
        .get("ecrpullsecrets", None, CR_NAME)
        .ok_or("the ECRPullSecret vanished")?;
    let status = &cr["status"];
    let state = |type_: &str| {
        condition(&cr, type_)
            .and_then(|c| c["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    section("kubectl get ecrps");
    println!("  NAME            SECRET    READY  NAMESPACES  VERIFIED  EXPIRES               AGE");
    println!(
        "  {:<15} {:<9} {:<6} {:<11} {:<9} {:<21} {}",
        CR_NAME,
        cr["spec"]["secretName"].as_str().unwrap_or(""),
        state("Ready"),
        status["syncedNamespaces"].to_string(),
        state("RegistryVerified"),
        status["expiresAt"].as_str().unwrap_or(""),
        age(&cr["metadata"]["creationTimestamp"])
    );
    section(&format!(
        "kubectl get ecrps {CR_NAME} -o yaml (status only)"
    ));
    let yaml = serde_yaml::to_string(&json!({"status": status})).unwrap_or_default();
    for line in yaml.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// The condition of type `type_` in a CR's status.
fn condition(cr: &Value, type_: &str) -> Option<Value> {
    cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// `kubectl`'s AGE column, in seconds (the demo is short).
fn age(created: &Value) -> String {
    let parsed = created.as_str().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    match parsed {
        Some(t) => format!(
            "{}s",
            (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0)
        ),
        None => "?".into(),
    }
}

fn print_map(map: &Value, indent: &str) {
    if let Some(m) = map.as_object() {
        for (k, v) in m {
            println!("{indent}{k}: {}", v.as_str().unwrap_or(&v.to_string()));
        }
    }
}

fn step(text: &str) {
    println!("==> {text}");
}

fn detail(text: &str) {
    println!("    {text}");
}

fn section(title: &str) {
    println!("\n--- {title}");
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(2) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
