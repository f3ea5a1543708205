//! What a running emulator holds between requests: its settings, counters, the current
//! fault, what the last requests carried, and the keys requests may be signed with.

use http::HeaderMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::answers::lock;
use super::auth;
use super::config::{AwsEmulatorConfig, Fault};
use super::sigv4;

/// Counters of answered requests by endpoint (faulted ones included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// ECR GetAuthorizationToken.
    pub ecr: u64,
    /// ECR Public GetAuthorizationToken.
    pub ecr_public: u64,
    /// STS AssumeRole.
    pub sts_assume_role: u64,
    /// STS AssumeRoleWithWebIdentity.
    pub sts_web_identity: u64,
    /// IMDSv2 session tokens (`PUT /latest/api/token`).
    pub imds_token: u64,
    /// IMDS role credentials.
    pub imds_credentials: u64,
    /// The container credentials endpoint.
    pub container: u64,
    /// Every request, endpoints above and unknown paths alike.
    pub total: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) ecr: AtomicU64,
    pub(super) ecr_public: AtomicU64,
    pub(super) sts_assume_role: AtomicU64,
    pub(super) sts_web_identity: AtomicU64,
    pub(super) imds_token: AtomicU64,
    pub(super) imds_credentials: AtomicU64,
    pub(super) container: AtomicU64,
    pub(super) total: AtomicU64,
    pub(super) issued: AtomicU64,
}

pub(super) struct State {
    pub(super) config: Mutex<AwsEmulatorConfig>,
    pub(super) counters: Counters,
    /// The fault and how many more requests meet it (None: every request).
    pub(super) fault: Mutex<Option<(Fault, Option<u32>)>>,
    /// Headers of the last request per endpoint name ("ecr", "sts", "container", ...).
    pub(super) last_headers: Mutex<HashMap<&'static str, HeaderMap>>,
    /// The last form body STS received (tests check WebIdentityToken was read fresh).
    pub(super) last_sts_form: Mutex<HashMap<String, String>>,
    pub(super) imds_tokens: Mutex<Vec<String>>,
    /// Every ECR authorizationToken handed out, with its expiresAt (epoch seconds).
    pub(super) issued_ecr: Mutex<HashMap<String, i64>>,
    /// The access keys requests may be signed with.
    pub(super) keys: auth::Keys,
}

/// Takes one use of the current fault, if any.
pub(super) fn take_fault(state: &State) -> Option<Fault> {
    let mut guard = lock(&state.fault);
    let (fault, remaining) = guard.as_mut()?;
    let fault = fault.clone();
    match remaining {
        None => {}
        Some(0) => {
            *guard = None;
            return None;
        }
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                *guard = None;
            }
        }
    }
    Some(fault)
}

/// The region from `Credential=AKID/20250101/REGION/service/aws4_request`, unverified
/// (when signatures are not checked).
pub(super) fn signed_region(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    scope.split('/').nth(2).map(str::to_string)
}

/// Verifies the request's signature for `service` when the emulator checks signatures;
/// the signed region (if any), or why AWS would refuse it.
pub(super) fn check_signature(
    state: &State,
    parts: &http::request::Parts,
    body: &[u8],
    service: &str,
) -> Result<Option<String>, sigv4::Refusal> {
    if !lock(&state.config).require_signature {
        return Ok(signed_region(&parts.headers));
    }
    let request = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body,
    };
    sigv4::verify(&request, service, OffsetDateTime::now_utc(), |id| {
        state.keys.get(id)
    })
    .map(|v| Some(v.region))
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Issues a fresh set of temporary credentials.
pub(super) fn issue(state: &State) -> (String, String, String, OffsetDateTime) {
    let n = state.counters.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let lifetime = lock(&state.config).credentials_lifetime;
    let expiry = OffsetDateTime::now_utc() + lifetime;
    let (ak, sk, token) = (
        format!("ASIAEMULATOR{n:08}"),
        format!("emulated-secret-{n}"),
        format!("emulated-session-token-{n}"),
    );
    state.keys.issued(&ak, &sk, &token, expiry);
    (ak, sk, token, expiry)
}
