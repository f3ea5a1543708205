//! Standalone Kubernetes API server emulator for `make demo` and `make bench`.
//!
//! Flags: --port N (0 = ephemeral), --bind ADDR, --token T, --tls CA_PATH (serve HTTPS and
//! write the CA PEM there), --history N, --bookmark-ms N, --no-default-sa, --crd PATH (a
//! CRD YAML instead of the built-in crd.yaml), --rbac PATH (enforce the rules of the
//! Role/ClusterRole documents there, cluster-wide), --rbac-user NAME, --user NAME (the
//! username requests run as for admission policies; default the operator's ServiceAccount,
//! `--user admin` for the cluster admin) and --no-admission (do not enforce the shipped
//! deploy/admission-policy.yaml).
//! Prints `listening on http://127.0.0.1:PORT` as its first stdout line; runs until
//! SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use emulators::k8s::{EmulatorConfig, K8sEmulator, RbacPolicy};

fn usage() -> &'static str {
    "usage: k8s-emulator [--port N] [--bind IP] [--token T] [--tls CA_PATH] [--history N] [--bookmark-ms N] [--no-default-sa] [--crd PATH] [--rbac PATH] [--rbac-user NAME] [--user NAME|admin] [--no-admission]"
}

/// Flags that act on the running emulator rather than its config.
#[derive(Default)]
struct Extra {
    ca_path: Option<String>,
    rbac_path: Option<String>,
    rbac_user: Option<String>,
}

fn parse_args() -> Result<(EmulatorConfig, Extra), String> {
    let mut cfg = EmulatorConfig::default();
    let mut extra = Extra::default();
    let mut ip: IpAddr = [127, 0, 0, 1].into();
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--port" => {
                port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--bind" => {
                ip = value("--bind")?
                    .parse()
                    .map_err(|e| format!("--bind: {e}"))?
            }
            "--token" => cfg.token = Some(value("--token")?),
            "--tls" => {
                cfg.tls = true;
                extra.ca_path = Some(value("--tls")?);
            }
            "--history" => {
                cfg.history_size = value("--history")?
                    .parse()
                    .map_err(|e| format!("--history: {e}"))?
            }
            "--bookmark-ms" => {
                let ms: u64 = value("--bookmark-ms")?
                    .parse()
                    .map_err(|e| format!("--bookmark-ms: {e}"))?;
                cfg.bookmark_interval = Some(Duration::from_millis(ms));
            }
            "--no-default-sa" => cfg.auto_default_service_account = false,
            "--crd" => {
                let path = value("--crd")?;
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("--crd {path}: {e}"))?;
                cfg.crds = vec![text];
            }
            "--rbac" => extra.rbac_path = Some(value("--rbac")?),
            "--rbac-user" => extra.rbac_user = Some(value("--rbac-user")?),
            "--user" => {
                let user = value("--user")?;
                cfg.user = (user != "admin").then_some(user);
            }
            "--no-admission" => cfg.admission_policies.clear(),
            "-h" | "--help" => return Err(usage().to_string()),
            other => return Err(format!("unknown flag {other}\n{}", usage())),
        }
    }
    cfg.bind = SocketAddr::new(ip, port);
    Ok((cfg, extra))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (cfg, extra) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let emu = match K8sEmulator::start(cfg).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("k8s-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &extra.rbac_path {
        let mut policy = RbacPolicy {
            user: extra
                .rbac_user
                .clone()
                .unwrap_or_else(|| "system:serviceaccount:default:default".into()),
            rules: Vec::new(),
        };
        let loaded = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| policy.add_role_yaml(&text, None));
        if let Err(e) = loaded {
            eprintln!("k8s-emulator: --rbac {path}: {e}");
            return ExitCode::FAILURE;
        }
        emu.set_rbac(Some(policy));
    }
    if let (Some(path), Some(pem)) = (extra.ca_path, emu.ca_pem()) {
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("k8s-emulator: writing the CA to {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("listening on {}", emu.url());
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("k8s-emulator: installing the SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emu.shutdown().await;
    ExitCode::SUCCESS
}
