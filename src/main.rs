//! The binary: parse settings, start the operator, handle signals.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use ecr_creds_refresher::{start, AwsEnv, Config, ConfigError, LogFormat, Stopped};
use tokio::signal::unix::{signal, SignalKind};

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
    // One thread: the operator waits on the API server far more than it computes, and
    // a second worker only added cross-thread wake-ups and a second malloc arena. At
    // 10,000 namespaces (the bench, alternated with two workers in one session) it cut
    // the CPU of a refresh from 2.19-2.31 s to 1.73-1.85 s and the steady RSS from
    // 24.4-24.8 MiB to 22.8-22.9.
    let runtime = match tokio::runtime::Builder::new_current_thread()
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

/// Levels from RUST_LOG as `level` and `target=level` directives (`info`,
/// `info,ecr_creds_refresher=debug`); `Targets` parses those without the regex engine
/// `EnvFilter` links in, which is most of a megabyte of binary.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = match directives.parse::<Targets>() {
        Ok(t) if !directives.trim().is_empty() => t,
        Ok(_) => Targets::new().with_default(tracing::Level::INFO),
        Err(e) => {
            eprintln!("ecr-creds-refresher: RUST_LOG={directives:?} is not understood ({e}); logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        }
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
        LogFormat::Text => registry.with(fmt.with_ansi(false)).init(),
    }
}

/// Startup failures: one line, exit code 2. Through the log (text or JSON, as
/// configured) when it shows errors; on stderr as plain text when RUST_LOG hides them, so
/// no setting can swallow why the process stopped.
fn fatal(e: impl std::fmt::Display) -> ExitCode {
    if tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!(error = %e, "cannot start");
    } else {
        eprintln!("ecr-creds-refresher: cannot start: {e}");
    }
    ExitCode::from(2)
}

async fn run(cfg: Config) -> ExitCode {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => return fatal(format!("cannot install signal handlers: {e}")),
    };
    let fips = cfg.use_fips;
    let env = AwsEnv::from_lookup(move |k| {
        if fips && k == "AWS_USE_FIPS_ENDPOINT" {
            return Some("true".to_string());
        }
        std::env::var(k).ok()
    });
    let running = match start(&cfg, env).await {
        Ok(r) => r,
        Err(e) => return fatal(e),
    };
    if cfg.once {
        return match running.run_once(ONCE_SYNC_TIMEOUT).await {
            Ok((total, 0)) => {
                tracing::info!(total, "--once: every ECRPullSecret reconciled and Ready");
                ExitCode::SUCCESS
            }
            Ok((total, failed)) => {
                tracing::error!(total, failed, "--once: some ECRPullSecrets failed");
                ExitCode::FAILURE
            }
            Err(e) => fatal(e),
        };
    }

    let lost = tokio::select! {
        _ = term.recv() => false,
        _ = int.recv() => false,
        _ = running.lost_leadership() => true,
    };
    if lost {
        // Another replica may lead any moment: stop writing at once, and let the
        // restart rejoin as a standby.
        tracing::error!("lost leadership; stopped all writes; exiting");
        running.abort();
        return ExitCode::FAILURE;
    }
    tracing::info!(grace = ?cfg.shutdown_grace,
        "shutting down: draining in-flight reconciles (a second signal exits at once)");
    let hurry = async {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    match running.shutdown(cfg.shutdown_grace, hurry).await {
        Stopped::Clean => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(130),
    }
}
