//! `aws-emulator --port N [--account-id ID] [--token-lifetime-secs S] [--no-signature-check]`:
//! fake ECR, ECR Public, STS, IMDSv2 and container credentials endpoints on loopback, for
//! `make demo` and `make bench`. First line on stdout: `listening on http://127.0.0.1:PORT`.
//! Requests must be signed (SigV4, verified) with `emulators::aws::ACCESS_KEY_ID` and its
//! secret, or with credentials the emulator issued; `--no-signature-check` accepts any.

use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use std::time::Duration;

fn parse_args() -> Result<AwsEmulatorConfig, String> {
    let mut config = AwsEmulatorConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                config.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--account-id" => config.account_id = value("--account-id")?,
            "--region" => config.default_region = value("--region")?,
            "--token-lifetime-secs" => {
                let secs: u64 = value("--token-lifetime-secs")?
                    .parse()
                    .map_err(|e| format!("--token-lifetime-secs: {e}"))?;
                config.token_lifetime = Duration::from_secs(secs);
            }
            "--container-token" => config.container_token = Some(value("--container-token")?),
            "--no-signature-check" => config.require_signature = false,
            "-h" | "--help" => {
                println!("usage: aws-emulator [--port N] [--account-id ID] [--region R] [--token-lifetime-secs S] [--container-token T] [--no-signature-check]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aws-emulator: {e}");
            std::process::exit(2);
        }
    };
    let emulator = match AwsEmulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aws-emulator: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", emulator.url());
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("aws-emulator: cannot watch SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let calls = emulator.calls();
    eprintln!(
        "aws-emulator: stopping after {} requests ({} ECR, {} ECR Public)",
        calls.total, calls.ecr, calls.ecr_public
    );
}
