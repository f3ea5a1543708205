//! Standalone Kubernetes API server emulator for `make demo` and `make bench`.
//!
//! Flags: --port N (0 = ephemeral), --bind ADDR, --token T, --tls CA_PATH (serve HTTPS and
//! write the CA PEM there), --history N, --bookmark-ms N, --no-default-sa.
//! Prints `listening on http://127.0.0.1:PORT` as its first stdout line; runs until
//! SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use emulators::k8s::{EmulatorConfig, K8sEmulator};

fn usage() -> &'static str {
    "usage: k8s-emulator [--port N] [--bind IP] [--token T] [--tls CA_PATH] [--history N] [--bookmark-ms N] [--no-default-sa]"
}

fn parse_args() -> Result<(EmulatorConfig, Option<String>), String> {
    let mut cfg = EmulatorConfig::default();
    let mut ca_path = None;
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
                ca_path = Some(value("--tls")?);
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
            "-h" | "--help" => return Err(usage().to_string()),
            other => return Err(format!("unknown flag {other}\n{}", usage())),
        }
    }
    cfg.bind = SocketAddr::new(ip, port);
    Ok((cfg, ca_path))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (cfg, ca_path) = match parse_args() {
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
    if let (Some(path), Some(pem)) = (ca_path, emu.ca_pem()) {
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
