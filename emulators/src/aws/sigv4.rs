//! SigV4 verification, written from AWS's published algorithm and never from the operator's
//! signer: a verifier that shared the signer's code would share its bugs and prove nothing.
//! The server's side of the exchange: rebuild the canonical request from what arrived,
//! derive the signing key from the secret the emulator knows for the access key, and
//! compare. <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html>

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
/// How far a request's `X-Amz-Date` may be from the server's clock, either way. AWS
/// allows five minutes for SigV4 requests to ECR and STS.
pub(crate) const MAX_SKEW: Duration = Duration::minutes(5);

/// What the emulator knows about an access key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub secret: String,
    /// Temporary credentials (issued by STS, IMDS or the container endpoint) are valid
    /// only with the session token they were issued with; long-term keys have none.
    pub session_token: Option<String>,
    /// When temporary credentials stop working.
    pub expires: Option<OffsetDateTime>,
}

// Secrets never reach a test's output.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A request whose signature holds: who signed it, and for where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub access_key_id: String,
    pub region: String,
}

/// Why a signature was refused, one variant per answer AWS gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that cannot be read, or lacks a part AWS requires.
    Incomplete(String),
    /// An access key id the emulator never issued nor was given.
    UnknownKey,
    /// A session token that is missing, wrong, or sent with a long-term key.
    InvalidToken,
    /// Temporary credentials past their expiry.
    ExpiredToken,
    /// `X-Amz-Date` more than [`MAX_SKEW`] from the emulator's clock.
    Expired { request_time: String },
    /// The signature is not the one the key's secret gives (or is scoped elsewhere).
    Mismatch(String),
}

/// What a request carries that the signature covers.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as it arrived on the wire (percent-encoded once).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// Verifies `request` as `service` (`ecr`, `ecr-public`, `sts`) at `now`; `key_of` looks
/// up an access key id. Checks run in AWS's order: the header's form, the key, its
/// token, the clock, then the signature.
pub(crate) fn verify(
    request: &SignedRequest<'_>,
    service: &str,
    now: OffsetDateTime,
    key_of: impl Fn(&str) -> Option<Key>,
) -> Result<Verified, Refusal> {
    let header = request
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or(Refusal::Missing)?
        .to_str()
        .map_err(|_| Refusal::Incomplete("Authorization is not visible ASCII".into()))?;
    let auth = parse_authorization(header)?;
    let key = key_of(auth.access_key_id).ok_or(Refusal::UnknownKey)?;
    let sent_token = header_value(request.headers, "x-amz-security-token");
    if sent_token.as_deref() != key.session_token.as_deref() {
        return Err(Refusal::InvalidToken);
    }
    if key.expires.is_some_and(|at| at <= now) {
        return Err(Refusal::ExpiredToken);
    }
    let amz_date = header_value(request.headers, "x-amz-date").ok_or_else(|| {
        Refusal::Incomplete("Authorization header requires the X-Amz-Date header".into())
    })?;
    let signed_at = parse_amz_date(&amz_date)
        .ok_or_else(|| Refusal::Incomplete(format!("X-Amz-Date {amz_date:?} is not valid")))?;
    if (now - signed_at).abs() > MAX_SKEW {
        return Err(Refusal::Expired {
            request_time: amz_date,
        });
    }
    check_scope(&auth, &amz_date, service)?;
    let canonical = canonical_request(request, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let signing_key = signing_key(&key.secret, auth.date, auth.region, auth.service);
    let expected = hex(&hmac(&signing_key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(Refusal::Mismatch(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        ));
    }
    Ok(Verified {
        access_key_id: auth.access_key_id.to_string(),
        region: auth.region.to_string(),
    })
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, Refusal> {
    let incomplete = |what: &str| Refusal::Incomplete(format!("Authorization header {what}"));
    let rest = header
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| incomplete("does not start with AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| incomplete("has a part without '='"))?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(incomplete("has an unknown part")),
        }
    }
    let credential = credential.ok_or_else(|| incomplete("lacks Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("lacks SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("lacks Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete("has a malformed Credential"));
    };
    if terminator != TERMINATOR || access_key_id.is_empty() {
        return Err(incomplete("has a malformed Credential"));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if !signed_headers.contains(&"host") {
        return Err(incomplete("does not sign the host header"));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// The credential scope must name the day of `X-Amz-Date` and this service.
fn check_scope(auth: &Authorization<'_>, amz_date: &str, service: &str) -> Result<(), Refusal> {
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(Refusal::Mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            amz_date.get(..8).unwrap_or(amz_date)
        )));
    }
    if auth.service != service {
        return Err(Refusal::Mismatch(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    Ok(())
}

/// `METHOD\nURI\nQUERY\nHEADERS\n\nSIGNED\nHEX(SHA256(BODY))`.
fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[&str],
) -> Result<String, Refusal> {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map(collapse_spaces)
                    .map_err(|_| Refusal::Incomplete(format!("header {name} is not ASCII")))
            })
            .collect::<Result<_, _>>()?;
        if values.is_empty() {
            return Err(Refusal::Incomplete(format!(
                "SignedHeaders names {name}, which the request does not carry"
            )));
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query.unwrap_or("")),
        signed_headers.join(";"),
        hex(&Sha256::digest(request.body)),
    ))
}

/// Services other than S3 normalize the path (no `.` or `..` segments) and encode each
/// segment once more on top of the wire's encoding.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let encoded: Vec<String> = segments.iter().map(|s| uri_encode(s)).collect();
    format!("/{}", encoded.join("/"))
}

/// Pairs sorted by name then value, each decoded from the wire and encoded the SigV4 way.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join("&")
}

/// RFC 3986 encoding: everything but `A-Z a-z 0-9 - _ . ~` becomes `%XX`, upper-case.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Trims a header value and folds each run of spaces into one.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(value, format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SUITE_KEY: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_TIME: OffsetDateTime = datetime!(2015-08-30 12:36:00 UTC);

    fn suite_key(id: &str) -> Option<Key> {
        (id == SUITE_KEY).then(|| Key {
            secret: SUITE_SECRET.into(),
            session_token: None,
            expires: None,
        })
    }

    /// AWS's published SigV4 test suite, case `get-vanilla`.
    fn vanilla(signature: &str, date: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", date.parse().unwrap());
        h.insert(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={signature}",
                &date[..8]
            )
            .parse()
            .unwrap(),
        );
        h
    }

    fn get(headers: &HeaderMap) -> SignedRequest<'_> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: None,
            headers,
            body: b"",
        }
    }

    const VANILLA: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    #[test]
    fn accepts_the_aws_test_suite_get_vanilla() {
        let h = vanilla(VANILLA, "20150830T123600Z");
        let ok = verify(&get(&h), "service", SUITE_TIME, suite_key).unwrap();
        assert_eq!(ok.region, "us-east-1");
        assert_eq!(ok.access_key_id, SUITE_KEY);
    }

    #[test]
    fn a_changed_signature_key_or_request_is_refused() {
        let h = vanilla(VANILLA, "20150830T123600Z");
        let other_secret = |id: &str| {
            suite_key(id).map(|k| Key {
                secret: "another-secret".into(),
                ..k
            })
        };
        assert!(matches!(
            verify(&get(&h), "service", SUITE_TIME, other_secret),
            Err(Refusal::Mismatch(_))
        ));
        let mut tampered = get(&h);
        tampered.method = "POST";
        assert!(matches!(
            verify(&tampered, "service", SUITE_TIME, suite_key),
            Err(Refusal::Mismatch(_))
        ));
        assert!(matches!(
            verify(&get(&h), "ecr", SUITE_TIME, suite_key),
            Err(Refusal::Mismatch(m)) if m.contains("'ecr'")
        ));
        assert_eq!(
            verify(&get(&h), "service", SUITE_TIME, |_| None),
            Err(Refusal::UnknownKey)
        );
        let bad = vanilla(&VANILLA.replace('5', "6"), "20150830T123600Z");
        assert!(matches!(
            verify(&get(&bad), "service", SUITE_TIME, suite_key),
            Err(Refusal::Mismatch(_))
        ));
    }

    #[test]
    fn a_date_more_than_five_minutes_off_is_expired_either_way() {
        let h = vanilla(VANILLA, "20150830T123600Z");
        for (skew, expired) in [(299, false), (301, true), (-299, false), (-301, true)] {
            let now = SUITE_TIME + Duration::seconds(skew);
            let got = verify(&get(&h), "service", now, suite_key);
            assert_eq!(
                matches!(got, Err(Refusal::Expired { .. })),
                expired,
                "{skew}: {got:?}"
            );
        }
    }

    #[test]
    fn temporary_keys_need_their_session_token_until_they_expire() {
        let temporary = |id: &str| {
            suite_key(id).map(|k| Key {
                session_token: Some("issued-token".into()),
                expires: Some(SUITE_TIME + Duration::hours(1)),
                ..k
            })
        };
        let h = vanilla(VANILLA, "20150830T123600Z");
        assert_eq!(
            verify(&get(&h), "service", SUITE_TIME, temporary),
            Err(Refusal::InvalidToken)
        );
        let mut with_token = h.clone();
        with_token.insert("x-amz-security-token", "another-token".parse().unwrap());
        assert_eq!(
            verify(&get(&with_token), "service", SUITE_TIME, temporary),
            Err(Refusal::InvalidToken)
        );
        assert_eq!(
            verify(&get(&with_token), "service", SUITE_TIME, suite_key),
            Err(Refusal::InvalidToken),
            "a long-term key takes no session token"
        );
        let late = SUITE_TIME + Duration::hours(2);
        let mut right = h.clone();
        right.insert("x-amz-security-token", "issued-token".parse().unwrap());
        assert_eq!(
            verify(&get(&right), "service", late, temporary),
            Err(Refusal::ExpiredToken)
        );
    }

    #[test]
    fn malformed_authorization_headers_are_incomplete() {
        for auth in [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, Signature=00",
            "AWS3 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        ] {
            let mut h = vanilla(VANILLA, "20150830T123600Z");
            h.insert("authorization", auth.parse().unwrap());
            assert!(
                matches!(
                    verify(&get(&h), "service", SUITE_TIME, suite_key),
                    Err(Refusal::Incomplete(_))
                ),
                "{auth}"
            );
        }
        assert_eq!(
            verify(&get(&HeaderMap::new()), "service", SUITE_TIME, suite_key),
            Err(Refusal::Missing)
        );
    }

    #[test]
    fn canonical_query_and_uri_follow_the_spec() {
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("Param1=value%201"), "Param1=value%201");
        assert_eq!(canonical_query("k=a%2Bb*"), "k=a%2Bb%2A");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c"), "/a/c");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
    }
}
