//! Reading AWS answers: the error document in all its shapes (JSON with `__type`/`code`,
//! the `x-amzn-ErrorType` header, XML `<ErrorResponse>`), a tolerant XML tag extractor
//! (we only ever need a handful of leaf values, so no XML crate), timestamps in every form
//! AWS sends, and form encoding for the query protocol.

use super::error::{short, AwsError, ErrorKind};
use http::HeaderMap;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::OffsetDateTime;

/// Cuts an error code to its name: `aws.protocols#ThrottlingException:http://...` ->
/// `ThrottlingException`.
pub(crate) fn sanitize_error_code(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    let code = code.rsplit('#').next().unwrap_or(code);
    code.trim()
}

/// Content type and length of a body: what an error may say about a body it could not read
/// (never the body itself, which could hold a token).
pub(crate) fn describe_body(headers: &HeaderMap, body: &[u8]) -> String {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content-type");
    format!("{ctype}, {} bytes", body.len())
}

/// Turns a non-2xx answer into an [`AwsError`]: JSON first, then XML, else `Unparseable`.
pub(crate) fn error_from_response(
    service: &'static str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> AwsError {
    let header_code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| sanitize_error_code(v).to_string())
        .filter(|c| !c.is_empty());
    let (body_code, message) = parse_json_error(body)
        .or_else(|| parse_xml_error(body))
        .unwrap_or((None, None));
    match header_code.or(body_code) {
        Some(code) => AwsError::Service {
            service,
            status,
            kind: ErrorKind::classify(&code, status),
            message: short(message.as_deref().unwrap_or("no message")),
            code,
        },
        None => AwsError::Unparseable {
            service,
            status,
            reason: "no AWS error code in the answer (a proxy or load balancer may have answered)"
                .into(),
            what: describe_body(headers, body),
        },
    }
}

/// `{"__type": "...", "message": "..."}` and its variants.
fn parse_json_error(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let code = text("code")
        .or_else(|| text("__type"))
        .or_else(|| text("Code"))
        .map(|c| sanitize_error_code(&c).to_string())
        .filter(|c| !c.is_empty());
    let message = text("message")
        .or_else(|| text("Message"))
        .or_else(|| text("errorMessage"));
    Some((code, message))
}

/// `<ErrorResponse><Error><Code>..</Code><Message>..</Message></Error></ErrorResponse>`
/// (also the bare `<Error>` form S3-style services and moto use).
fn parse_xml_error(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let text = std::str::from_utf8(body).ok()?;
    let error = xml_tag(text, "Error")?;
    let code = xml_tag(error, "Code").map(|c| sanitize_error_code(&xml_unescape(c)).to_string());
    let message = xml_tag(error, "Message").map(xml_unescape);
    code.as_ref()?;
    Some((code, message))
}

/// The inner text of the first `<tag>` or `<tag attr="...">` element in `doc`, or None.
/// Tolerant by design: it does not validate the document, only finds a matching pair.
pub(crate) fn xml_tag<'a>(doc: &'a str, tag: &str) -> Option<&'a str> {
    let mut search = 0;
    while let Some(found) = doc[search..].find('<') {
        let start = search + found + 1;
        let rest = &doc[start..];
        if let Some(after) = rest.strip_prefix(tag) {
            match after.chars().next() {
                Some('>') => {
                    let inner_start = start + tag.len() + 1;
                    return close_of(doc, inner_start, tag);
                }
                Some(c) if c.is_whitespace() || c == '/' => {
                    let gt = after.find('>')?;
                    if after[..gt].ends_with('/') {
                        return Some("");
                    }
                    let inner_start = start + tag.len() + gt + 1;
                    return close_of(doc, inner_start, tag);
                }
                _ => {}
            }
        }
        search = start;
    }
    None
}

fn close_of<'a>(doc: &'a str, inner_start: usize, tag: &str) -> Option<&'a str> {
    let close = format!("</{tag}>");
    let end = doc[inner_start..].find(&close)?;
    Some(doc[inner_start..inner_start + end].trim())
}

/// Unwraps a CDATA section (moto wraps messages in one) or undoes the five predefined XML
/// entities (all STS ever sends in values).
pub(crate) fn xml_unescape(s: &str) -> String {
    if let Some(inner) = s
        .strip_prefix("<![CDATA[")
        .and_then(|r| r.strip_suffix("]]>"))
    {
        return inner.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Epoch seconds as AWS JSON sends them: integer, float, or exponent form
/// (`1.7385984915E9`). Fractions are kept to the millisecond.
pub(crate) fn epoch_seconds(value: &serde_json::Value) -> Option<OffsetDateTime> {
    let secs = value.as_f64()?;
    if !secs.is_finite() {
        return None;
    }
    let millis = (secs * 1000.0).round();
    if millis.abs() > 253_402_300_799_000.0 {
        return None; // past year 9999: not a real expiry
    }
    OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000).ok()
}

/// A timestamp as STS (ISO-8601), the container endpoint and IMDS (RFC 3339, maybe with
/// nanoseconds) send it; also accepts epoch seconds written as a string.
pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .ok()
        .or_else(|| {
            s.parse::<f64>()
                .ok()
                .and_then(|n| epoch_seconds(&serde_json::json!(n)))
        })
}

/// `application/x-www-form-urlencoded` with RFC 3986 unreserved characters kept.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, k);
        out.push('=');
        percent_encode_into(&mut out, v);
    }
    out
}

fn percent_encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn error_code_is_cut_at_colon_and_after_hash() {
        assert_eq!(
            sanitize_error_code("ThrottlingException"),
            "ThrottlingException"
        );
        assert_eq!(
            sanitize_error_code("aws.protocols#ThrottlingException:http://internal.amazon.com/"),
            "ThrottlingException"
        );
        assert_eq!(
            sanitize_error_code("com.amazon.coral.service#AccessDeniedException"),
            "AccessDeniedException"
        );
    }

    #[test]
    fn header_error_type_wins_over_body() {
        let h = headers(&[("x-amzn-ErrorType", "ThrottlingException:http://x/")]);
        let err = error_from_response(
            "ecr",
            400,
            &h,
            br#"{"__type":"Other","message":"slow down"}"#,
        );
        match err {
            AwsError::Service {
                code,
                kind,
                message,
                ..
            } => {
                assert_eq!(code, "ThrottlingException");
                assert_eq!(kind, ErrorKind::Throttling);
                assert_eq!(message, "slow down");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_code_then_type_and_all_message_spellings() {
        let h = HeaderMap::new();
        let cases: [(&[u8], &str, &str); 4] = [
            (
                br#"{"code":"AccessDeniedException","Message":"no"}"#,
                "AccessDeniedException",
                "no",
            ),
            (
                br#"{"__type":"com.amazon#UnrecognizedClientException","message":"bad key"}"#,
                "UnrecognizedClientException",
                "bad key",
            ),
            (
                br#"{"__type":"InvalidSignatureException","errorMessage":"sig"}"#,
                "InvalidSignatureException",
                "sig",
            ),
            (
                br#"{"__type":"ExpiredTokenException"}"#,
                "ExpiredTokenException",
                "no message",
            ),
        ];
        for (body, want_code, want_msg) in cases {
            match error_from_response("ecr", 400, &h, body) {
                AwsError::Service { code, message, .. } => {
                    assert_eq!(code, want_code);
                    assert_eq!(message, want_msg);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn xml_error_documents_are_read() {
        let body = br#"<?xml version="1.0"?><ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>
  <Message>The request signature we calculated does not match &amp; so on</Message></Error>
  <RequestId>abc</RequestId></ErrorResponse>"#;
        match error_from_response("sts", 403, &HeaderMap::new(), body) {
            AwsError::Service {
                code,
                kind,
                message,
                ..
            } => {
                assert_eq!(code, "SignatureDoesNotMatch");
                assert_eq!(kind, ErrorKind::InvalidSignature);
                assert!(message.ends_with("does not match & so on"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn moto_style_errors_with_errors_wrapper_and_cdata_are_read() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
  <ErrorResponse>
    <Errors>
      <Error>
        <Code>AccessDenied</Code>
        <Message><![CDATA[User: arn:aws:iam::123456789012:user/nopull is not authorized to perform: ecr:GetAuthorizationToken]]></Message>
      </Error>
    </Errors>
  <RequestId>x</RequestId>
</ErrorResponse>"#;
        match error_from_response("ecr", 403, &HeaderMap::new(), body) {
            AwsError::Service {
                code,
                kind,
                message,
                ..
            } => {
                assert_eq!(code, "AccessDenied");
                assert_eq!(kind, ErrorKind::AccessDenied);
                assert!(
                    message.starts_with("User: arn:aws:iam::123456789012:user/nopull is not"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn html_and_truncated_bodies_are_unparseable_and_not_echoed() {
        let h = headers(&[("content-type", "text/html")]);
        let err = error_from_response(
            "ecr",
            502,
            &h,
            b"<html><body>Bad gateway secret-ish</body></html>",
        );
        assert!(matches!(err, AwsError::Unparseable { status: 502, .. }));
        assert!(err.is_retryable());
        assert!(!err.to_string().contains("secret-ish"), "{err}");
        assert!(err.to_string().contains("text/html"), "{err}");
        let err = error_from_response("ecr", 400, &HeaderMap::new(), br#"{"__type":"Throttl"#);
        assert!(matches!(err, AwsError::Unparseable { .. }), "{err:?}");
    }

    #[test]
    fn error_kinds_classify_codes_and_statuses() {
        assert_eq!(
            ErrorKind::classify("RequestExpired", 400),
            ErrorKind::RequestExpired
        );
        assert_eq!(
            ErrorKind::classify("ExpiredToken", 400),
            ErrorKind::ExpiredToken
        );
        assert_eq!(
            ErrorKind::classify("InternalFailure", 500),
            ErrorKind::Server
        );
        assert_eq!(ErrorKind::classify("Whatever", 429), ErrorKind::Throttling);
        assert_eq!(
            ErrorKind::classify("ValidationError", 400),
            ErrorKind::Other
        );
        assert!(ErrorKind::Throttling.is_retryable() && ErrorKind::Server.is_retryable());
        assert!(!ErrorKind::AccessDenied.is_retryable());
    }

    #[test]
    fn long_messages_are_cut() {
        let long = format!(r#"{{"__type":"X","message":"{}"}}"#, "a".repeat(5000));
        let err = error_from_response("ecr", 400, &HeaderMap::new(), long.as_bytes());
        assert!(err.to_string().len() < 600);
    }

    #[test]
    fn xml_tag_finds_elements_with_attributes_and_ignores_prefixes() {
        let doc = r#"<A><CodeX>no</CodeX><Code lang="en"> yes </Code><Empty/></A>"#;
        assert_eq!(xml_tag(doc, "Code"), Some("yes"));
        assert_eq!(xml_tag(doc, "Empty"), Some(""));
        assert_eq!(xml_tag(doc, "Missing"), None);
        assert_eq!(xml_tag("<Code>unterminated", "Code"), None);
    }

    #[test]
    fn expires_at_in_every_number_form() {
        let want = OffsetDateTime::from_unix_timestamp(1_738_598_491).unwrap();
        for v in [
            serde_json::json!(1_738_598_491),
            serde_json::from_str::<serde_json::Value>("1738598491.0").unwrap(),
            serde_json::from_str::<serde_json::Value>("1.738598491E9").unwrap(),
            serde_json::from_str::<serde_json::Value>("1.738598491e+9").unwrap(),
        ] {
            assert_eq!(epoch_seconds(&v), Some(want), "{v}");
        }
        let frac = serde_json::from_str::<serde_json::Value>("1.7385984915E9").unwrap();
        assert_eq!(
            epoch_seconds(&frac),
            Some(want + time::Duration::milliseconds(500))
        );
        assert_eq!(epoch_seconds(&serde_json::json!("1738598491")), None);
        assert_eq!(epoch_seconds(&serde_json::json!(1e300)), None);
    }

    #[test]
    fn timestamps_in_iso_and_rfc3339_forms() {
        let want = OffsetDateTime::from_unix_timestamp(1_738_598_491).unwrap();
        assert_eq!(parse_timestamp("2025-02-03T16:01:31Z"), Some(want));
        assert_eq!(parse_timestamp("2025-02-03T16:01:31.000Z"), Some(want));
        assert_eq!(parse_timestamp("2025-02-03T17:01:31+01:00"), Some(want));
        assert_eq!(
            parse_timestamp("2025-02-03T16:01:31.123456789Z").map(|t| t.unix_timestamp()),
            Some(1_738_598_491)
        );
        assert_eq!(parse_timestamp("1738598491"), Some(want));
        assert_eq!(parse_timestamp("tomorrow"), None);
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form_encode(&[("RoleArn", "arn:aws:iam::1:role/a b"), ("X", "a+b=c&d~")]),
            "RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b&X=a%2Bb%3Dc%26d~"
        );
    }

    proptest::proptest! {
        /// Whatever a proxy or a broken server sends, reading it never panics and an
        /// unreadable answer never repeats the body.
        #[test]
        fn any_body_gives_an_error_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), status in 400u16..600) {
            let err = error_from_response("ecr", status, &HeaderMap::new(), &body);
            if let AwsError::Unparseable { what, .. } = &err {
                proptest::prop_assert!(what.ends_with("bytes"));
            }
        }

        #[test]
        fn xml_tag_never_panics(doc in ".{0,200}", tag in "[A-Za-z]{1,8}") {
            let _ = xml_tag(&doc, &tag);
        }

        #[test]
        fn integer_epoch_seconds_round_trip(secs in 0i64..253_402_300_799) {
            let t = epoch_seconds(&serde_json::json!(secs)).unwrap();
            proptest::prop_assert_eq!(t.unix_timestamp(), secs);
        }
    }
}
