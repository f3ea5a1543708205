//! What the emulator is told: where its endpoints are, the key it knows from the start,
//! its settings, and the faults a test may switch on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::answers::lock;

/// `X-Amz-Target` of ECR's GetAuthorizationToken.
pub const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
pub(crate) const ECR_PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
pub(crate) const IMDS_TOKEN_PATH: &str = "/latest/api/token";
pub(crate) const IMDS_CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// Path of the container credentials endpoint (point AWS_CONTAINER_CREDENTIALS_FULL_URI here).
pub const CONTAINER_PATH: &str = "/v1/credentials";

/// The long-term key every emulator knows from the start (others:
/// [`AwsEmulator::add_key`](crate::aws::AwsEmulator::add_key)).
/// The secret has `/` and `+` in it, as real ones do, so a test that searches for it where
/// it must not be (logs, metrics) searches for the awkward kind.
pub const ACCESS_KEY_ID: &str = "AKIAEMULATOREXAMPLE1";
/// The secret of [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "emulated/Secret+AccessKey/do-not-log-0123456789";
/// The region a client of these endpoints is configured with by default.
pub const REGION: &str = "us-east-1";

/// What the fake endpoints answer.
#[derive(Clone, Debug)]
pub struct AwsEmulatorConfig {
    /// Port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The 12-digit account in ECR's `proxyEndpoint` host.
    pub account_id: String,
    /// Region used in proxyEndpoint when the request is not signed.
    pub default_region: String,
    /// Lifetime of ECR tokens (real ECR: 12 hours).
    pub token_lifetime: Duration,
    /// Lifetime of credentials from STS, IMDS and the container endpoint.
    pub credentials_lifetime: Duration,
    /// ECR/ECR Public/AssumeRole verify each request's SigV4 signature against the keys
    /// the emulator knows, and refuse it as AWS would; false accepts anything.
    pub require_signature: bool,
    /// The instance profile role IMDS reports.
    pub imds_role: String,
    /// The Authorization value the container endpoint requires, if any.
    pub container_token: Option<String>,
    /// The password of every ECR token issued (user `AWS`), so a real registry can be set
    /// up to accept it; `None`: a new random one of ECR's size per call, as ECR does
    /// ([`ecr_password`](crate::aws::ecr_password)).
    pub token_password: Option<String>,
    /// Serve HTTPS with a fresh self-signed certificate for `localhost` and `127.0.0.1`
    /// (trust it through
    /// [`AwsEmulator::certificate_der`](crate::aws::AwsEmulator::certificate_der)).
    pub tls: bool,
    /// IAM Roles Anywhere's CreateSession (`POST /sessions`) and its trust anchor.
    pub roles_anywhere: Option<RolesAnywhereConfig>,
}

impl Default for AwsEmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            account_id: "123456789012".into(),
            default_region: "us-east-1".into(),
            token_lifetime: Duration::from_secs(12 * 3600),
            credentials_lifetime: Duration::from_secs(3600),
            require_signature: true,
            imds_role: "ecr-node-role".into(),
            container_token: None,
            token_password: None,
            tls: false,
            roles_anywhere: None,
        }
    }
}

/// A fault the next requests meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 ThrottlingException with `x-amzn-ErrorType` (JSON 1.1 style).
    Throttle,
    /// 500 with a JSON InternalFailure body.
    ServerError,
    /// 400 with an XML `<ErrorResponse>` (code given).
    XmlError(String),
    /// 400 AccessDeniedException.
    AccessDenied,
    /// 502 with an HTML page, as a proxy or load balancer sends.
    Html,
    /// 200 with a JSON body cut in the middle.
    Truncated,
    /// The normal answer, after this delay.
    Latency(Duration),
}

/// What the emulated account has configured.
#[derive(Clone, Debug)]
pub struct RolesAnywhereConfig {
    /// The only trust anchor CreateSession accepts.
    pub trust_anchor_arn: String,
    /// The only profile CreateSession accepts.
    pub profile_arn: String,
    /// Roles the profile lists.
    pub role_arns: Vec<String>,
    /// DER of the CA certificate the trust anchor holds.
    pub anchor_der: Vec<u8>,
    /// How far `X-Amz-Date` may be from the emulator's clock.
    pub max_skew: Duration,
    /// Serials of the certificates sessions were created for, oldest first (shared by
    /// clones, so a test reads what the running emulator accepted).
    pub accepted: Arc<Mutex<Vec<String>>>,
}

impl RolesAnywhereConfig {
    /// One anchor, one profile listing one role, and AWS's 5-minute clock skew.
    pub fn new(
        trust_anchor_arn: &str,
        profile_arn: &str,
        role_arn: &str,
        anchor_der: Vec<u8>,
    ) -> Self {
        Self {
            trust_anchor_arn: trust_anchor_arn.into(),
            profile_arn: profile_arn.into(),
            role_arns: vec![role_arn.into()],
            anchor_der,
            max_skew: Duration::from_secs(300),
            accepted: Arc::default(),
        }
    }

    /// The serials accepted so far.
    pub fn accepted_serials(&self) -> Vec<String> {
        lock(&self.accepted).clone()
    }
}
