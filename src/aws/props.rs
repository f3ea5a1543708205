//! Properties of AWS answer parsing: ECR's JSON, STS's XML and the shared error and time
//! helpers take whatever bytes a server, proxy or load balancer sends without panicking,
//! and an answer they cannot use never brings its credentials into the error.

use crate::aws::ecr::{decode_token, parse_authorization_response};
use crate::aws::http::HttpResponse;
use crate::aws::sts::parse_credentials_response;
use crate::aws::wire::{
    epoch_seconds, error_from_response, form_encode, parse_timestamp, sanitize_error_code, xml_tag,
    xml_unescape,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;

fn response(status: u16, headers: HeaderMap, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body),
    }
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    (
        prop::option::of(".{0,40}"),
        prop::option::of(prop::sample::select(vec![
            "application/x-amz-json-1.1",
            "text/xml",
            "text/html",
            "application/json",
        ])),
    )
        .prop_map(|(err_type, ctype)| {
            let mut h = HeaderMap::new();
            if let Some(v) = err_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert("x-amzn-errortype", v);
            }
            if let Some(c) = ctype {
                h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(c));
            }
            h
        })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        Just(400),
        Just(403),
        Just(429),
        Just(500),
        Just(502),
        100u16..600
    ]
}

/// A password as ECR makes them: long, base64-ish.
fn password() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/]{40,120}"
}

/// An ECR answer with one thing wrong (or nothing), and the token and password it holds.
fn ecr_answer() -> impl Strategy<Value = (Vec<u8>, String, String)> {
    (password(), 0usize..9, any::<u32>()).prop_map(|(pw, flaw, n)| {
        let auth = STANDARD.encode(format!("AWS:{pw}"));
        let mut v = serde_json::json!({"authorizationData": [{
            "authorizationToken": auth,
            "expiresAt": 1.7385984915E9,
            "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        }]});
        let d = &mut v["authorizationData"][0];
        match flaw {
            0 => {}
            1 => d["expiresAt"] = serde_json::json!("tomorrow"),
            2 => d
                .as_object_mut()
                .unwrap()
                .remove("expiresAt")
                .map(|_| ())
                .unwrap_or(()),
            3 => d["proxyEndpoint"] = serde_json::json!(n),
            4 => d["proxyEndpoint"] = serde_json::json!("https://"),
            5 => d["expiresAt"] = serde_json::json!(f64::MAX),
            6 => d["authorizationToken"] = serde_json::json!(STANDARD.encode(pw.as_bytes())),
            7 => d["authorizationToken"] = serde_json::json!(format!("{auth}!")),
            _ => v = serde_json::json!({"authorizationData": {"authorizationToken": auth}}),
        }
        let mut body = v.to_string().into_bytes();
        if n % 5 == 0 {
            // Truncated mid-answer, as a cut connection leaves it.
            body.truncate(n as usize % (body.len() + 1));
        }
        (body, auth, pw)
    })
}

/// An STS answer with one thing wrong (or nothing), with its secret key and session token.
fn sts_answer() -> impl Strategy<Value = (Vec<u8>, String, String)> {
    (password(), "[A-Za-z0-9+/]{60,200}", 0usize..7, any::<u32>()).prop_map(
        |(secret, token, flaw, n)| {
            let expiration = match flaw {
                1 => "someday".to_string(),
                2 => String::new(),
                _ => "2030-01-02T03:04:05Z".to_string(),
            };
            let mut creds = format!(
                "<AccessKeyId>ASIAPROPTEST</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
                 <SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration>"
            );
            match flaw {
                3 => creds = creds.replace(&format!("<SessionToken>{token}</SessionToken>"), ""),
                4 => creds = creds.replace("</SecretAccessKey>", ""),
                5 => creds = creds.replace("<AccessKeyId>ASIAPROPTEST</AccessKeyId>", ""),
                _ => {}
            }
            let mut body = format!(
                "<AssumeRoleResponse><AssumeRoleResult><Credentials>{creds}</Credentials>\
                 </AssumeRoleResult></AssumeRoleResponse>"
            )
            .into_bytes();
            if flaw == 6 || n % 4 == 0 {
                body.truncate(n as usize % (body.len() + 1));
            }
            (body, secret, token)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ecr_parsing_never_panics_on_arbitrary_answers(
        status in status(),
        headers in headers(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        public in any::<bool>(),
    ) {
        let r = response(status, headers, body);
        if let Err(e) = parse_authorization_response(&r, public) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn ecr_answers_that_cannot_be_used_never_echo_the_token(
        (body, auth, password) in ecr_answer(),
        public in any::<bool>(),
    ) {
        let r = response(200, HeaderMap::new(), body);
        match parse_authorization_response(&r, public) {
            Ok(t) => {
                prop_assert_eq!(&t.auth, &auth);
                prop_assert_eq!(&t.password, &password);
                let debug = format!("{t:?}");
                prop_assert!(!debug.contains(&password) && !debug.contains(&auth), "{debug}");
            }
            Err(e) => {
                for shown in [e.to_string(), format!("{e:?}")] {
                    prop_assert!(!shown.contains(&auth), "token in error: {shown}");
                    prop_assert!(!shown.contains(&password), "password in error: {shown}");
                }
            }
        }
    }

    #[test]
    fn decode_token_errors_never_echo_the_token(s in ".{0,80}") {
        match decode_token(&s) {
            Ok((user, pass)) => {
                let raw = STANDARD.decode(s.trim()).expect("accepted tokens are base64");
                prop_assert_eq!(raw, format!("{user}:{pass}").into_bytes());
            }
            Err(reason) => prop_assert!(s.len() < 8 || !reason.contains(s.as_str())),
        }
    }

    #[test]
    fn sts_parsing_never_panics_on_arbitrary_answers(
        status in status(),
        headers in headers(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        text in ".{0,200}",
    ) {
        for b in [body, text.into_bytes()] {
            let r = response(status, headers.clone(), b);
            let _ = parse_credentials_response(&r, "AssumeRole", "proptest");
            let _ = parse_credentials_response(&r, "AssumeRoleWithWebIdentity", "proptest");
        }
    }

    #[test]
    fn sts_answers_that_cannot_be_used_never_echo_the_secrets(
        (body, secret, token) in sts_answer(),
    ) {
        let r = response(200, HeaderMap::new(), body);
        match parse_credentials_response(&r, "AssumeRole", "proptest") {
            Ok(c) => {
                prop_assert_eq!(c.secret_access_key(), secret.as_str());
                let debug = format!("{c:?}");
                prop_assert!(!debug.contains(&secret) && !debug.contains(&token), "{debug}");
            }
            Err(e) => {
                for shown in [e.to_string(), format!("{e:?}")] {
                    prop_assert!(!shown.contains(&secret), "secret key in error: {shown}");
                    prop_assert!(!shown.contains(&token), "session token in error: {shown}");
                }
            }
        }
    }

    #[test]
    fn wire_helpers_never_panic(
        status in status(),
        headers in headers(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        text in ".{0,120}",
        tag in "[A-Za-z]{0,12}",
        number in any::<f64>(),
    ) {
        let e = error_from_response("ecr", status, &headers, &body);
        prop_assert!(!e.to_string().is_empty());
        let _ = error_from_response("sts", status, &headers, text.as_bytes());
        let _ = sanitize_error_code(&text);
        let _ = xml_tag(&text, &tag);
        let _ = xml_unescape(&text);
        let _ = parse_timestamp(&text);
        let _ = epoch_seconds(&serde_json::json!(number));
        let _ = epoch_seconds(&serde_json::json!(text));
        let _ = form_encode(&[(tag.as_str(), text.as_str())]);
    }

    #[test]
    fn a_non_2xx_body_is_described_never_quoted_when_it_has_no_error_code(
        status in 400u16..600,
        secret in password(),
    ) {
        // A proxy's HTML page quoting a credential: no AWS code, so the error describes the
        // body (type and size) and never quotes it.
        let body = format!("<html><body>upstream said {secret}</body></html>");
        let e = error_from_response("ecr", status, &HeaderMap::new(), body.as_bytes());
        prop_assert!(!e.to_string().contains(&secret), "{e}");
    }
}
