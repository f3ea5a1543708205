//! IAM Roles Anywhere's CreateSession (`POST /sessions`), verified the way the service
//! documents it, with code of its own (x509-parser and ring, not the operator's signer):
//! the certificate chains to the configured trust anchor (validity dates, basic
//! constraints, key usage); the Authorization header's serial is the certificate's; the
//! SigV4 canonical request, rebuilt here from what arrived, carries a signature the
//! certificate's public key verifies; `X-Amz-Date` is within five minutes. What it hands
//! out are the emulator's temporary credentials, the same kind STS issues.

use super::answers::{json_error, lock, Answer};
use super::config::RolesAnywhereConfig;
use super::state::{issue, rfc3339, State};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use ring::signature::{self, UnparsedPublicKey};
use time::{OffsetDateTime, PrimitiveDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{ASN1Time, FromDer};
use x509_parser::public_key::PublicKey;

/// The request as it arrived.
pub(super) struct Arrived<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

type Refusal = (StatusCode, &'static str, String);

fn denied(message: impl Into<String>) -> Refusal {
    (
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        message.into(),
    )
}

pub(super) fn create_session(
    state: &State,
    config: Option<&RolesAnywhereConfig>,
    req: &Arrived<'_>,
) -> Answer {
    let Some(config) = config else {
        return json_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "no trust anchor is configured",
        );
    };
    match verify(config, req, OffsetDateTime::now_utc()) {
        Ok((serial, duration)) => {
            lock(&config.accepted).push(serial);
            let (ak, sk, token, expiry) = issue(state);
            let expiry = expiry.min(OffsetDateTime::now_utc() + duration);
            let body = serde_json::json!({"credentialSet": [{
                "assumedRoleUser": {"arn": "arn:aws:sts::123456789012:assumed-role/edge/device", "assumedRoleId": "AROAEMU:device"},
                "credentials": {"accessKeyId": ak, "secretAccessKey": sk, "sessionToken": token, "expiration": rfc3339(expiry)},
                "packedPolicySize": 0,
                "roleArn": config.role_arns.first(),
                "sourceIdentity": "CN=device",
            }], "subjectArn": "arn:aws:rolesanywhere:us-east-1:123456789012:subject/emu"});
            super::answer(StatusCode::CREATED, "application/json", body.to_string())
        }
        Err((status, code, message)) => json_error(status, code, &message),
    }
}

/// Everything CreateSession checks; the certificate's serial and the session length.
fn verify(
    config: &RolesAnywhereConfig,
    req: &Arrived<'_>,
    now: OffsetDateTime,
) -> Result<(String, time::Duration), Refusal> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let auth = Authorization::parse(header("authorization").unwrap_or(""))
        .ok_or_else(|| denied("missing or malformed Authorization"))?;
    let date = header("x-amz-date").ok_or_else(|| denied("missing X-Amz-Date"))?;
    let signed_at =
        parse_amz_date(date).ok_or_else(|| denied("X-Amz-Date is not yyyyMMddTHHmmssZ"))?;
    if (now - signed_at).unsigned_abs() > config.max_skew {
        return Err(denied("Signature expired: X-Amz-Date is too far from now"));
    }
    if !auth.scope.starts_with(&format!("{}/", &date[..8]))
        || !auth.scope.ends_with("/rolesanywhere/aws4_request")
    {
        return Err(denied(
            "credential scope does not match X-Amz-Date or the service",
        ));
    }
    for needed in ["host", "x-amz-date", "x-amz-x509"] {
        if !auth.signed_headers.iter().any(|h| h == needed) {
            return Err(denied(format!("{needed} is not signed")));
        }
    }
    let leaf_der =
        decode(header("x-amz-x509")).ok_or_else(|| denied("X-Amz-X509 is not base64 DER"))?;
    let chain_der: Vec<Vec<u8>> = match header("x-amz-x509-chain") {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(|c| decode(Some(c.trim())))
            .collect::<Option<_>>()
            .ok_or_else(|| denied("X-Amz-X509-Chain is not base64 DER"))?,
    };
    let leaf = parse(&leaf_der)?;
    let chain = chain_der
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let anchor = parse(&config.anchor_der)?;
    chain_to_anchor(&leaf, &chain, &anchor, now)?;
    if leaf.tbs_certificate.serial.to_string() != auth.serial {
        return Err(denied(
            "the serial in the credential does not match the certificate",
        ));
    }
    let string_to_sign = format!(
        "{}\n{date}\n{}\n{}",
        auth.algorithm,
        auth.scope,
        hex(ring::digest::digest(
            &ring::digest::SHA256,
            canonical(req, &auth.signed_headers).as_bytes()
        )
        .as_ref())
    );
    let signature = unhex(&auth.signature).ok_or_else(|| denied("the signature is not hex"))?;
    check_signature(
        &leaf,
        &auth.algorithm,
        string_to_sign.as_bytes(),
        &signature,
    )?;
    let duration = session_request(config, req.body)?;
    Ok((auth.serial, duration))
}

/// `ALG Credential=SERIAL/SCOPE, SignedHeaders=a;b, Signature=hex`.
struct Authorization {
    algorithm: String,
    serial: String,
    scope: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    fn parse(value: &str) -> Option<Self> {
        let (algorithm, rest) = value.split_once(' ')?;
        if !matches!(algorithm, "AWS4-X509-RSA-SHA256" | "AWS4-X509-ECDSA-SHA256") {
            return None;
        }
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "Credential" => credential = Some(v),
                "SignedHeaders" => signed = Some(v),
                "Signature" => signature = Some(v),
                _ => return None,
            }
        }
        let (serial, scope) = credential?.split_once('/')?;
        Some(Self {
            algorithm: algorithm.into(),
            serial: serial.into(),
            scope: scope.into(),
            signed_headers: signed?.split(';').map(str::to_string).collect(),
            signature: signature?.into(),
        })
    }
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, &format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn decode(v: Option<&str>) -> Option<Vec<u8>> {
    STANDARD.decode(v?).ok()
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Refusal> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(denied("a certificate is not valid DER")),
    }
}

/// Leaf -> intermediates (any order, as sent) -> the anchor; every link signed by the
/// next, every certificate in its validity period, every issuer a CA allowed to sign
/// certificates, the leaf allowed to sign (digitalSignature).
fn chain_to_anchor(
    leaf: &X509Certificate<'_>,
    chain: &[X509Certificate<'_>],
    anchor: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    let at = ASN1Time::from(now);
    let in_date = |c: &X509Certificate<'_>| c.validity().is_valid_at(at);
    if !in_date(leaf) {
        return Err(denied(
            "Untrusted signing certificate: outside its validity period",
        ));
    }
    if let Ok(Some(ku)) = leaf.key_usage() {
        if !ku.value.digital_signature() {
            return Err(denied(
                "Untrusted signing certificate: key usage lacks digitalSignature",
            ));
        }
    }
    let may_issue = |c: &X509Certificate<'_>| {
        let ca = matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let ku = match c.key_usage() {
            Ok(Some(ku)) => ku.value.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        ca && ku && in_date(c)
    };
    let signed_by = |child: &X509Certificate<'_>, parent: &X509Certificate<'_>| {
        child.issuer().as_raw() == parent.subject().as_raw()
            && child.verify_signature(Some(parent.public_key())).is_ok()
    };
    let mut current = leaf;
    for _ in 0..=chain.len() {
        if signed_by(current, anchor) {
            return if may_issue(anchor) {
                Ok(())
            } else {
                Err(denied("the trust anchor cannot issue certificates"))
            };
        }
        current = chain
            .iter()
            .find(|c| signed_by(current, c) && may_issue(c))
            .ok_or_else(|| denied("Untrusted signing certificate: no chain to the trust anchor"))?;
    }
    Err(denied(
        "Untrusted signing certificate: no chain to the trust anchor",
    ))
}

/// SigV4's canonical request over the headers the client says it signed.
fn canonical(req: &Arrived<'_>, signed: &[String]) -> String {
    let mut lines = vec![req.method.as_str().to_string(), req.uri.path().to_string()];
    let mut query: Vec<&str> = req
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|q| !q.is_empty())
        .collect();
    query.sort();
    lines.push(query.join("&"));
    for name in signed {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.push(format!("{name}:{}", values.join(",")));
    }
    lines.push(String::new());
    lines.push(signed.join(";"));
    lines.push(hex(
        ring::digest::digest(&ring::digest::SHA256, req.body).as_ref()
    ));
    lines.join("\n")
}

fn check_signature(
    leaf: &X509Certificate<'_>,
    algorithm: &str,
    message: &[u8],
    sig: &[u8],
) -> Result<(), Refusal> {
    let spki = leaf.public_key();
    let key = spki.subject_public_key.data.as_ref();
    let verifier: &dyn signature::VerificationAlgorithm = match (algorithm, spki.parsed()) {
        ("AWS4-X509-RSA-SHA256", Ok(PublicKey::RSA(_))) => &signature::RSA_PKCS1_2048_8192_SHA256,
        ("AWS4-X509-ECDSA-SHA256", Ok(PublicKey::EC(p))) if p.key_size() == 256 => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        ("AWS4-X509-ECDSA-SHA256", Ok(PublicKey::EC(p))) if p.key_size() == 384 => {
            &signature::ECDSA_P384_SHA256_ASN1
        }
        _ => return Err(denied("the algorithm does not match the certificate's key")),
    };
    UnparsedPublicKey::new(verifier, key)
        .verify(message, sig)
        .map_err(|_| {
            denied("The request signature we calculated does not match the signature you provided")
        })
}

/// The body's ARNs against the account's, and the session length (900 to 43200 s).
fn session_request(config: &RolesAnywhereConfig, body: &[u8]) -> Result<time::Duration, Refusal> {
    let invalid = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            "ValidationException",
            m.to_string(),
        )
    };
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| invalid("the body is not JSON"))?;
    let text = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or("");
    if text("trustAnchorArn") != config.trust_anchor_arn {
        return Err(denied(
            "Untrusted signing certificate: unknown trust anchor",
        ));
    }
    if text("profileArn") != config.profile_arn {
        return Err(denied("unknown profile"));
    }
    if !config.role_arns.iter().any(|r| r == text("roleArn")) {
        return Err(denied("the profile does not list this role"));
    }
    let seconds = doc
        .get("durationSeconds")
        .map_or(Some(3600), |v| v.as_i64());
    match seconds {
        Some(s @ 900..=43_200) => Ok(time::Duration::seconds(s)),
        _ => Err(invalid("durationSeconds must be 900 to 43200")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
