//! Settings: command-line flags (controller-runtime's names) and the environment (the AWS
//! SDKs' names plus the reference operator's), with named defaults. Parsing is pure so it
//! is tested without touching the process.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where probes are served unless told otherwise (controller-runtime's default).
pub(crate) const DEFAULT_PROBE_ADDR: &str = "0.0.0.0:8081";
/// Where metrics are served unless told otherwise; `0` turns them off.
pub(crate) const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:8080";
pub(crate) const DEFAULT_LEADER_ELECTION_ID: &str = "ecr-creds-refresher";
/// Reconciles running at once; each has its own bounded write concurrency.
pub(crate) const DEFAULT_WORKERS: usize = 4;
/// How long SIGTERM waits for in-flight reconciles before giving up.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The lowest `spec.refresh.minInterval` a CR may ask for (see `--min-refresh-interval`).
pub(crate) const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// `--log-format`: how log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything the binary is told.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Out of cluster: the API server URL (plain http allowed for `kubectl proxy`).
    pub api_server: Option<String>,
    /// `--token-file`: the bearer token, re-read when it rotates.
    pub token_file: Option<PathBuf>,
    /// `--ca-file`: the CA bundle the API server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// `--health-probe-bind-address`: `/healthz` and `/readyz`; `None` disables.
    pub probe_addr: Option<SocketAddr>,
    /// `--metrics-bind-address`: `/metrics`; `None` disables.
    pub metrics_addr: Option<SocketAddr>,
    /// `--leader-elect`: only the Lease holder writes.
    pub leader_elect: bool,
    /// `--leader-election-namespace`: where the Lease lives (default: the operator's).
    pub leader_election_namespace: Option<String>,
    /// `--leader-election-id`: the Lease's name.
    pub leader_election_id: String,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--once`: reconcile every CR once, then exit.
    pub once: bool,
    /// `--workers`: reconciles that may run at once.
    pub workers: usize,
    /// `--shutdown-grace`: how long a SIGTERM waits for reconciles in flight.
    pub shutdown_grace: Duration,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// `REGISTRY`: default registry hosts, comma-separated.
    pub registries: Vec<String>,
    /// `AWS_CREDENTIALS_SECRET_NAME` / `_NAMESPACE`: static keys in a Secret.
    pub credentials_secret: Option<(String, String)>,
    /// The operator's own namespace (`POD_NAMESPACE`, else the service-account file).
    pub namespace: Option<String>,
    /// This instance's identity for leader election and events (`POD_NAME`, else host).
    pub identity: String,
    /// `--aws-credentials-source`: `auto` (the SDK order) or one source.
    pub aws_credentials_source: String,
    /// `--verify-registries`: check each new token at its registries (default true;
    /// `--verify-registries=false` for networks where the pods' registry path differs).
    pub verify_registries: bool,
    /// `--use-fips-endpoint`: same as AWS_USE_FIPS_ENDPOINT=true.
    pub use_fips: bool,
    /// `--min-refresh-interval`: the lowest `minInterval` a CR may ask for.
    pub min_refresh_interval: Duration,
    /// `--allowed-role-arns`: globs a CR's `spec.aws.roleArn` must match (`*` any).
    pub allowed_role_arns: Vec<String>,
    /// `--allow-plain-http-token`: send the bearer token over plain http to a host other
    /// than loopback (a network anyone on the path can read).
    pub allow_plain_http_token: bool,
    /// `--allow-plain-http-registry`: let `ECR_REGISTRY_ENDPOINT_URL` be plain http to a
    /// host other than loopback (every registry check sends an ECR password there).
    pub allow_plain_http_registry: bool,
}

/// Bad flags or environment: reported at startup, before anything runs.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A flag the binary does not have.
    UnknownFlag(String),
    /// A flag given without its value.
    MissingValue(String),
    /// A value the flag (or variable) does not take.
    BadValue {
        /// The flag or environment variable.
        flag: String,
        /// The value given.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// `--help`: its Display is the usage text.
    Help,
    /// `--version`: its Display is the version line.
    Version,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "flag {flag} needs a value"),
            ConfigError::BadValue {
                flag,
                value,
                reason,
            } => {
                write!(f, "bad value {value:?} for {flag}: {reason}")
            }
            ConfigError::Help => f.write_str(USAGE),
            ConfigError::Version => f.write_str(VERSION),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `--version`: the version, the commit and the target (build.rs), as bug reports need.
pub(crate) const VERSION: &str = concat!(
    "ecr-creds-refresher ",
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ECR_CREDS_REFRESHER_COMMIT"),
    ", target ",
    env!("ECR_CREDS_REFRESHER_TARGET"),
    ")"
);

pub(crate) const USAGE: &str = "\
ecr-creds-refresher: keeps Amazon ECR pull secrets fresh in Kubernetes namespaces

USAGE: ecr-creds-refresher [FLAGS]

Kubernetes (in cluster by default):
  --api-server URL                  API server URL, e.g. http://127.0.0.1:8001 for `kubectl proxy`
  --token-file PATH                 bearer token file (re-read every minute and after a 401)
  --ca-file PATH                    CA bundle that signs the API server's certificate
Operation:
  --health-probe-bind-address ADDR  /healthz and /readyz (default :8081, 0 disables)
  --metrics-bind-address ADDR       /metrics (default :8080, 0 disables)
  --leader-elect                    elect a leader on a Lease; only the leader writes
  --leader-election-namespace NS    namespace of the Lease (default: the pod's)
  --leader-election-id NAME         name of the Lease (default ecr-creds-refresher)
  --log-format text|json            log format (levels from RUST_LOG, default info)
  --once                            reconcile every ECRPullSecret once and exit (non-zero on failure)
  --workers N                       reconciles at once (default 4)
  --shutdown-grace SECONDS          time SIGTERM gives in-flight work (default 20)
  --allow-plain-http-token          send --token-file's token over http:// to a non-loopback host
Limits on ECRPullSecrets (who may create one borrows the operator's power):
  --min-refresh-interval DURATION   lowest spec.refresh.minInterval accepted (default 30s)
  --allowed-role-arns LIST          comma-separated globs spec.aws.roleArn must match (default *; empty: none)
AWS:
  --aws-credentials-source KIND     auto (SDK order), secret, env, web-identity, container, imds,
                                    roles-anywhere (AWS_ROLESANYWHERE_* below)
  --use-fips-endpoint               FIPS endpoints (as AWS_USE_FIPS_ENDPOINT=true)
  --verify-registries=false         do not check new tokens at the registries (GET /v2/)
  --allow-plain-http-registry       let ECR_REGISTRY_ENDPOINT_URL be http:// to a non-loopback host
  -h, --help                        this text
  -V, --version                     version, commit and target
Environment:
  AWS_REGION (else AWS_DEFAULT_REGION)  region when no registry names one
  REGISTRY                          default registry hosts, comma-separated
  AWS_CREDENTIALS_SECRET_NAME, AWS_CREDENTIALS_SECRET_NAMESPACE
                                    a Secret with static keys (namespace: the operator's)
  AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL_ECR_PUBLIC, AWS_ENDPOINT_URL_STS
                                    endpoint overrides (all services, then per service)
  AWS_USE_FIPS_ENDPOINT             FIPS endpoints
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                                    static credentials
  AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_SESSION_NAME
                                    web identity (IRSA)
  AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI,
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, AWS_CONTAINER_AUTHORIZATION_TOKEN
                                    container credentials (EKS Pod Identity, ECS)
  AWS_EC2_METADATA_DISABLED, AWS_EC2_METADATA_SERVICE_ENDPOINT
                                    instance metadata (IMDSv2)
  AWS_ROLESANYWHERE_TRUST_ANCHOR_ARN, AWS_ROLESANYWHERE_PROFILE_ARN, AWS_ROLESANYWHERE_ROLE_ARN
                                    IAM Roles Anywhere (--aws-credentials-source roles-anywhere)
  AWS_ROLESANYWHERE_CERTIFICATE, AWS_ROLESANYWHERE_PRIVATE_KEY
                                    PEM files (certificate, then chain), re-read per session
  AWS_ROLESANYWHERE_SESSION_DURATION
                                    session seconds (default 3600)
  AWS_ENDPOINT_URL_ROLESANYWHERE    Roles Anywhere endpoint override
  AWS_CA_BUNDLE                     extra trusted CAs (PEM) for AWS and registry checks
  ECR_REGISTRY_ENDPOINT_URL         where registry checks go instead of https://<host>
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY (or lower case)
                                    proxy for AWS and registry checks
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                                    the API server in cluster (set by the kubelet)
  POD_NAMESPACE, POD_NAME (else HOSTNAME)
                                    own namespace; identity in the Lease and events
  RUST_LOG                          log levels, e.g. info or info,ecr_creds_refresher=debug
";

// === impl Config ===

impl Config {
    /// Parses `args` (without the program name) and the environment through `env`.
    pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cfg = Config::from_env(env)?;
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || -> Result<String, ConfigError> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => args
                        .next()
                        .ok_or_else(|| ConfigError::MissingValue(flag.clone())),
                }
            };
            let known = cfg.kubernetes_flag(&flag, &mut value)?
                || cfg.operation_flag(&flag, inline.as_deref(), &mut value)?
                || cfg.limit_flag(&flag, &mut value)?;
            if !known {
                return Err(match flag.as_str() {
                    "-h" | "--help" => ConfigError::Help,
                    "-V" | "--version" => ConfigError::Version,
                    _ => ConfigError::UnknownFlag(arg),
                });
            }
        }
        if cfg.token_file.is_some() && cfg.api_server.is_none() {
            return Err(bad(
                "--token-file",
                "",
                "only with --api-server (in cluster the service-account token is used)",
            ));
        }
        Ok(cfg)
    }

    /// The defaults, and what the environment says (the AWS SDKs' and the reference
    /// operator's names).
    fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let nonempty = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let namespace = nonempty("POD_NAMESPACE");
        let credentials_secret = nonempty("AWS_CREDENTIALS_SECRET_NAME").map(|name| {
            let ns = nonempty("AWS_CREDENTIALS_SECRET_NAMESPACE")
                .or_else(|| namespace.clone())
                .unwrap_or_else(|| "default".to_string());
            (ns, name)
        });
        Ok(Config {
            api_server: None,
            token_file: None,
            ca_file: None,
            probe_addr: parse_addr("--health-probe-bind-address", DEFAULT_PROBE_ADDR)?,
            metrics_addr: parse_addr("--metrics-bind-address", DEFAULT_METRICS_ADDR)?,
            leader_elect: false,
            leader_election_namespace: None,
            leader_election_id: DEFAULT_LEADER_ELECTION_ID.to_string(),
            log_format: LogFormat::Text,
            once: false,
            workers: DEFAULT_WORKERS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            region: nonempty("AWS_REGION").or_else(|| nonempty("AWS_DEFAULT_REGION")),
            registries: nonempty("REGISTRY").map(|r| list(&r)).unwrap_or_default(),
            credentials_secret,
            namespace,
            identity: nonempty("POD_NAME")
                .or_else(|| nonempty("HOSTNAME"))
                .unwrap_or_else(|| format!("ecr-creds-refresher-{}", std::process::id())),
            aws_credentials_source: "auto".to_string(),
            use_fips: false,
            verify_registries: true,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            allowed_role_arns: vec!["*".to_string()],
            allow_plain_http_token: false,
            allow_plain_http_registry: false,
        })
    }

    /// Where the API server is and how to reach it; `false` for another flag.
    fn kubernetes_flag(
        &mut self,
        flag: &str,
        value: &mut impl FnMut() -> Result<String, ConfigError>,
    ) -> Result<bool, ConfigError> {
        match flag {
            "--api-server" => self.api_server = Some(value()?),
            "--token-file" => self.token_file = Some(PathBuf::from(value()?)),
            "--ca-file" => self.ca_file = Some(PathBuf::from(value()?)),
            "--allow-plain-http-token" => self.allow_plain_http_token = true,
            "--leader-election-namespace" => self.leader_election_namespace = Some(value()?),
            "--leader-election-id" => self.leader_election_id = value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// How the operator runs; `false` for another flag.
    fn operation_flag(
        &mut self,
        flag: &str,
        inline: Option<&str>,
        value: &mut impl FnMut() -> Result<String, ConfigError>,
    ) -> Result<bool, ConfigError> {
        match flag {
            "--health-probe-bind-address" => self.probe_addr = parse_addr(flag, &value()?)?,
            "--metrics-bind-address" => self.metrics_addr = parse_addr(flag, &value()?)?,
            "--leader-elect" => {
                self.leader_elect = match inline {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => return Err(bad(flag, v, "true or false")),
                }
            }
            "--log-format" => {
                let v = value()?;
                self.log_format = match v.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(bad(flag, &v, "text or json")),
                }
            }
            "--once" => self.once = true,
            "--verify-registries" => {
                self.verify_registries = match inline {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => return Err(bad(flag, v, "true or false")),
                }
            }
            "--use-fips-endpoint" => self.use_fips = true,
            "--allow-plain-http-registry" => self.allow_plain_http_registry = true,
            "--aws-credentials-source" => {
                let v = value()?;
                let kinds = [
                    "auto",
                    "secret",
                    "env",
                    "web-identity",
                    "container",
                    "imds",
                    "roles-anywhere",
                ];
                if !kinds.contains(&v.as_str()) {
                    return Err(bad(
                        flag,
                        &v,
                        "auto, secret, env, web-identity, container, imds or roles-anywhere",
                    ));
                }
                self.aws_credentials_source = v;
            }
            "--workers" => {
                let v = value()?;
                self.workers = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| bad(flag, &v, "a number from 1 to 64"))?;
            }
            "--shutdown-grace" => {
                let v = value()?;
                let secs: u64 = v.parse().map_err(|_| bad(flag, &v, "whole seconds"))?;
                self.shutdown_grace = Duration::from_secs(secs);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// What ECRPullSecrets may ask for; `false` for another flag.
    fn limit_flag(
        &mut self,
        flag: &str,
        value: &mut impl FnMut() -> Result<String, ConfigError>,
    ) -> Result<bool, ConfigError> {
        match flag {
            "--min-refresh-interval" => {
                let v = value()?;
                self.min_refresh_interval = crate::reconcile::decide::fields::parse_duration(&v)
                    .filter(|d| (1..=12 * 3600).contains(&d.as_secs()))
                    .ok_or_else(|| bad(flag, &v, "a duration from 1s to 12h, like 30s"))?;
            }
            "--allowed-role-arns" => self.allowed_role_arns = list(&value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A comma-separated list, trimmed, without empty entries.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn bad(flag: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// `:8080`, `0.0.0.0:8080`, `[::]:8080`; `0` disables.
fn parse_addr(flag: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value == "0" || value.is_empty() {
        return Ok(None);
    }
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse()
        .map(Some)
        .map_err(|_| bad(flag, value, "host:port, :port, or 0 to disable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn bind_address_accepts_go_style_port_only_and_zero_disables() {
        let parse = |v: &str| parse_addr("--metrics-bind-address", v);
        assert_eq!(
            parse(":8081").unwrap(),
            Some("0.0.0.0:8081".parse().unwrap())
        );
        assert_eq!(
            parse("127.0.0.1:9").unwrap(),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            parse("[::1]:8080").unwrap(),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(parse("0").unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
        assert!(parse(":99999").is_err());
        assert!(parse("localhost:80").is_err());
        let msg = parse(":x").unwrap_err().to_string();
        assert!(msg.contains(":x"), "{msg}");
    }

    #[test]
    fn controller_runtime_flag_names_and_defaults() {
        let c = Config::parse(
            [
                "--leader-elect",
                "--metrics-bind-address=0",
                "--health-probe-bind-address",
                ":9000",
                "--log-format=json",
            ],
            env(&[]),
        )
        .unwrap();
        assert!(c.leader_elect);
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.probe_addr, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.leader_election_id, "ecr-creds-refresher");
        assert!(c.verify_registries, "verification is on by default");
        let off = Config::parse(["--verify-registries=false"], env(&[])).unwrap();
        assert!(!off.verify_registries);
        assert!(Config::parse(["--verify-registries=no"], env(&[])).is_err());
    }

    #[test]
    fn reference_operator_environment_is_honoured() {
        let c = Config::parse(
            Vec::<String>::new(),
            env(&[
                ("AWS_REGION", "eu-west-1"),
                ("REGISTRY", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                ("AWS_CREDENTIALS_SECRET_NAME", "aws-creds"),
                ("AWS_CREDENTIALS_SECRET_NAMESPACE", "ops"),
            ]),
        )
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            c.registries,
            vec!["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]
        );
        assert_eq!(
            c.credentials_secret,
            Some(("ops".into(), "aws-creds".into()))
        );
    }

    #[test]
    fn roles_anywhere_is_a_credential_source_flag_value() {
        let c = Config::parse(["--aws-credentials-source", "roles-anywhere"], env(&[])).unwrap();
        assert_eq!(c.aws_credentials_source, "roles-anywhere");
        let err = Config::parse(["--aws-credentials-source", "x509"], env(&[])).unwrap_err();
        assert!(err.to_string().contains("roles-anywhere"), "{err}");
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        assert_eq!(
            Config::parse(["--bogus"], env(&[])),
            Err(ConfigError::UnknownFlag("--bogus".into()))
        );
        assert_eq!(
            Config::parse(["--api-server"], env(&[])),
            Err(ConfigError::MissingValue("--api-server".into()))
        );
        assert!(Config::parse(["--log-format", "xml"], env(&[]))
            .unwrap_err()
            .to_string()
            .contains("text or json"));
        assert!(Config::parse(["--workers", "0"], env(&[])).is_err());
        assert!(Config::parse(["--metrics-bind-address", "nonsense"], env(&[])).is_err());
    }

    #[test]
    fn plain_http_to_the_registry_endpoint_is_opt_in() {
        let c = Config::parse(Vec::<String>::new(), env(&[])).unwrap();
        assert!(!c.allow_plain_http_registry);
        let c = Config::parse(["--allow-plain-http-registry"], env(&[])).unwrap();
        assert!(c.allow_plain_http_registry);
    }

    #[test]
    fn limits_on_crs_have_safe_defaults_and_can_be_set() {
        let c = Config::parse(Vec::<String>::new(), env(&[])).unwrap();
        assert_eq!(c.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(c.allowed_role_arns, ["*"]);
        assert!(!c.allow_plain_http_token);
        let c = Config::parse(
            [
                "--min-refresh-interval=1s",
                "--allowed-role-arns",
                "arn:aws:iam::123456789012:role/ecr-*, arn:aws:iam::210987654321:role/pull",
                "--allow-plain-http-token",
            ],
            env(&[]),
        )
        .unwrap();
        assert_eq!(c.min_refresh_interval, Duration::from_secs(1));
        assert_eq!(c.allowed_role_arns.len(), 2);
        assert!(c.allow_plain_http_token);
        assert!(Config::parse(["--min-refresh-interval=0s"], env(&[])).is_err());
        assert!(Config::parse(["--min-refresh-interval=13h"], env(&[])).is_err());
        let none = Config::parse(["--allowed-role-arns="], env(&[])).unwrap();
        assert!(none.allowed_role_arns.is_empty());
    }
}
