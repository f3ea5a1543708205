//! The SigV4 variant IAM Roles Anywhere documents for CreateSession: SigV4's canonical
//! request and string to sign, with `AWS4-X509-RSA-SHA256` or `AWS4-X509-ECDSA-SHA256`,
//! the certificate's decimal serial where an access key id would be, the certificate
//! (and chain) in `X-Amz-X509` (`X-Amz-X509-Chain`), and the signature made with the
//! private key instead of an HMAC. aws-sigv4 has no hook for this, so it is written here.

use super::identity::X509Identity;
use crate::aws::error::AwsError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use ring::digest::{digest, SHA256};
use std::fmt::Write;
use std::time::SystemTime;
use time::macros::format_description;
use time::OffsetDateTime;

/// The signing name of IAM Roles Anywhere.
pub const SERVICE: &str = "rolesanywhere";

/// Signs `request` in place: adds `host` (from the URI, if absent), `x-amz-date`,
/// `x-amz-x509`, `x-amz-x509-chain` (with intermediates) and `authorization`. Every
/// header present is signed, so the request must be complete before this is called.
pub fn sign_request(
    request: &mut http::Request<Bytes>,
    identity: &X509Identity,
    region: &str,
    time: SystemTime,
) -> Result<(), AwsError> {
    let bad = |reason: String| AwsError::Signing { reason };
    let now = OffsetDateTime::from(time);
    let amz_date = now
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| bad(e.to_string()))?;
    let scope = format!("{}/{region}/{SERVICE}/aws4_request", &amz_date[..8]);
    if !request.headers().contains_key(http::header::HOST) {
        let host =
            request_host(request.uri()).ok_or_else(|| bad("request URI has no host".into()))?;
        request.headers_mut().insert(http::header::HOST, host);
    }
    let mut set = |name: &'static str, value: String| -> Result<(), AwsError> {
        let value = http::HeaderValue::try_from(value).map_err(|e| bad(e.to_string()))?;
        request.headers_mut().insert(name, value);
        Ok(())
    };
    set("x-amz-date", amz_date.clone())?;
    set("x-amz-x509", STANDARD.encode(identity.certificate().der()))?;
    if !identity.chain().is_empty() {
        let chain: Vec<String> = identity
            .chain()
            .iter()
            .map(|c| STANDARD.encode(c))
            .collect();
        set("x-amz-x509-chain", chain.join(","))?;
    }
    let (canonical, signed_headers) = canonical_request(request)?;
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
        "{algorithm} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={}",
        identity.certificate().serial(),
        hex(&signature)
    );
    let authorization =
        http::HeaderValue::try_from(authorization).map_err(|e| bad(e.to_string()))?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization);
    Ok(())
}

fn request_host(uri: &http::Uri) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(uri.authority()?.as_str()).ok()
}

/// SigV4's canonical request, and the `SignedHeaders` list it used.
pub(crate) fn canonical_request(
    request: &http::Request<Bytes>,
) -> Result<(String, String), AwsError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in request.headers() {
        if name == http::header::AUTHORIZATION {
            continue;
        }
        let value = value.to_str().map_err(|_| AwsError::Signing {
            reason: format!("header {name} is not visible ASCII"),
        })?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match headers.iter_mut().find(|(n, _)| n == name.as_str()) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => headers.push((name.as_str().to_string(), value)),
        }
    }
    headers.sort();
    let signed = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<&str> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    query.sort_unstable();
    let query: Vec<String> = query
        .iter()
        .map(|p| {
            if p.contains('=') {
                p.to_string()
            } else {
                format!("{p}=")
            }
        })
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "{}\n{}\n{}\n",
        request.method(),
        encode_path(request.uri().path()),
        query.join("&")
    );
    for (name, value) in &headers {
        let _ = writeln!(out, "{name}:{value}");
    }
    let _ = write!(
        out,
        "\n{signed}\n{}",
        hex(digest(&SHA256, request.body()).as_ref())
    );
    Ok((out, signed))
}

/// Each byte outside RFC 3986's unreserved set (and `/`) as `%XX`; an empty path is `/`.
fn encode_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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
