//! The SigV4 variant IAM Roles Anywhere documents for CreateSession: SigV4's canonical
//! request and string to sign, with `AWS4-X509-RSA-SHA256` or `AWS4-X509-ECDSA-SHA256`,
//! the certificate's decimal serial where an access key id would be, the certificate
//! (and chain) in `X-Amz-X509` (`X-Amz-X509-Chain`), and the signature made with the
//! private key instead of an HMAC. aws-sigv4 has no hook for this, so it is written here.
//!
//! Only the one request shape CreateSession needs is signed: a path of unreserved
//! characters, no query, and `content-type` as the only header set beforehand. Anything
//! else is refused rather than canonicalised, which keeps the signer small (the binary
//! has a size budget) and leaves no canonicalisation rule untested.

use crate::aws::error::AwsError;
use crate::aws::x509::X509Identity;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::HeaderValue;
use ring::digest::{digest, SHA256};
use std::fmt::Write;
use std::time::SystemTime;
use time::OffsetDateTime;

/// The signing name of IAM Roles Anywhere.
pub(crate) const SERVICE: &str = "rolesanywhere";

/// Signs `request` in place: adds `host` (from the URI), `x-amz-date`, `x-amz-x509`,
/// `x-amz-x509-chain` (with intermediates) and `authorization`.
pub(crate) fn sign_request(
    request: &mut http::Request<Bytes>,
    identity: &X509Identity,
    region: &str,
    time: SystemTime,
) -> Result<(), AwsError> {
    let bad = |reason: &str| AwsError::Signing {
        reason: reason.to_string(),
    };
    let uri = request.uri();
    let path = uri.path();
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b);
    if uri.query().is_some() || !path.bytes().all(plain) {
        return Err(bad("only a plain path with no query is signed"));
    }
    let host = uri.authority().ok_or_else(|| bad("no host"))?.to_string();
    let headers = request.headers();
    let content_type = match headers.get(CONTENT_TYPE).map(HeaderValue::to_str) {
        Some(Ok(v)) if headers.len() == 1 && v.trim() == v => v.to_string(),
        _ => return Err(bad("content-type must be the only header before signing")),
    };
    let amz_date = amz_date(time);
    let x509 = STANDARD.encode(identity.certificate().der());
    let chain: Vec<String> = identity
        .chain()
        .iter()
        .map(|c| STANDARD.encode(c))
        .collect();
    let chain = chain.join(",");
    let (chain_line, signed) = if chain.is_empty() {
        (String::new(), "content-type;host;x-amz-date;x-amz-x509")
    } else {
        (
            format!("x-amz-x509-chain:{chain}\n"),
            "content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain",
        )
    };
    let canonical = format!(
        "{}\n{path}\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n\
         x-amz-x509:{x509}\n{chain_line}\n{signed}\n{}",
        request.method(),
        hex(digest(&SHA256, request.body()).as_ref())
    );
    let scope = format!("{}/{region}/{SERVICE}/aws4_request", &amz_date[..8]);
    let algorithm = identity.key().algorithm().name();
    let string_to_sign = format!(
        "{algorithm}\n{amz_date}\n{scope}\n{}",
        hex(digest(&SHA256, canonical.as_bytes()).as_ref())
    );
    let signature = identity
        .key()
        .sign(string_to_sign.as_bytes())
        .map_err(AwsError::Certificate)?;
    let authorization = format!(
        "{algorithm} Credential={}/{scope}, SignedHeaders={signed}, Signature={}",
        identity.certificate().serial(),
        hex(&signature)
    );
    let mut add = |name: http::HeaderName, value: String| {
        HeaderValue::try_from(value)
            .map(|v| request.headers_mut().insert(name, v))
            .map_err(|_| bad("a header value is not visible ASCII"))
    };
    add(HOST, host)?;
    add(http::HeaderName::from_static("x-amz-date"), amz_date)?;
    add(http::HeaderName::from_static("x-amz-x509"), x509)?;
    if !chain.is_empty() {
        add(http::HeaderName::from_static("x-amz-x509-chain"), chain)?;
    }
    add(AUTHORIZATION, authorization)?;
    Ok(())
}

/// `x-amz-date`: ISO 8601 basic format, UTC, to the second.
fn amz_date(time: SystemTime) -> String {
    let now = OffsetDateTime::from(time);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
#[path = "signer_tests.rs"]
mod tests;
