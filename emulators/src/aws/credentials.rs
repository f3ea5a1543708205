//! The endpoints that hand out temporary credentials: STS AssumeRole and
//! AssumeRoleWithWebIdentity (query protocol, XML), IMDSv2 and the container endpoint.

use crate::form::percent_decode;
use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

use super::answers::{answer, lock, xml_error, Answer};
use super::auth;
use super::config::{AwsEmulatorConfig, IMDS_CREDENTIALS_PATH};
use super::state::{check_signature, issue, rfc3339, State};

pub(super) fn sts(state: &State, parts: &http::request::Parts, body: &[u8]) -> Answer {
    let params = form(body);
    *lock(&state.last_sts_form) = params.clone();
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
    match action {
        "AssumeRole" => {
            state
                .counters
                .sts_assume_role
                .fetch_add(1, Ordering::SeqCst);
            if let Err(refusal) = check_signature(state, parts, body, "sts") {
                return auth::refused(&refusal, auth::Protocol::Query);
            }
        }
        "AssumeRoleWithWebIdentity" => {
            state
                .counters
                .sts_web_identity
                .fetch_add(1, Ordering::SeqCst);
            if params.get("WebIdentityToken").is_none_or(|t| t.is_empty()) {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdentityToken",
                    "No WebIdentityToken",
                );
            }
        }
        _ => return xml_error(StatusCode::BAD_REQUEST, "InvalidAction", "Unknown Action"),
    }
    if role_arn.is_empty() || !params.contains_key("RoleSessionName") {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn and RoleSessionName are required",
        );
    }
    let (ak, sk, token, expiry) = issue(state);
    let body = format!(
        r#"<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result><Credentials><AccessKeyId>{ak}</AccessKeyId><SecretAccessKey>{sk}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><Arn>{role_arn}/session</Arn></AssumedRoleUser></{action}Result></{action}Response>"#,
        rfc3339(expiry)
    );
    answer(StatusCode::OK, "text/xml", body)
}

pub(super) fn imds(
    state: &State,
    config: &AwsEmulatorConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Answer {
    if method == Method::PUT {
        if headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .is_none()
        {
            return answer(StatusCode::BAD_REQUEST, "text/plain", "missing ttl header");
        }
        let token = format!(
            "imds-session-{}",
            state.counters.imds_token.load(Ordering::SeqCst)
        );
        lock(&state.imds_tokens).push(token.clone());
        return answer(StatusCode::OK, "text/plain", token);
    }
    let presented = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !lock(&state.imds_tokens).iter().any(|t| t == presented) {
        return answer(StatusCode::UNAUTHORIZED, "text/plain", "");
    }
    let role = path.trim_start_matches(IMDS_CREDENTIALS_PATH);
    if role.is_empty() {
        return answer(StatusCode::OK, "text/plain", config.imds_role.clone());
    }
    if role != config.imds_role {
        return answer(StatusCode::NOT_FOUND, "text/plain", "");
    }
    credentials_json(state)
}

pub(super) fn container(state: &State, config: &AwsEmulatorConfig, headers: &HeaderMap) -> Answer {
    if let Some(want) = &config.container_token {
        let got = headers.get("authorization").and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return answer(
                StatusCode::UNAUTHORIZED,
                "application/json",
                r#"{"code":"AccessDeniedException","message":"bad authorization token"}"#,
            );
        }
    }
    credentials_json(state)
}

fn credentials_json(state: &State) -> Answer {
    let (ak, sk, token, expiry) = issue(state);
    let body = serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": ak,
        "SecretAccessKey": sk,
        "Token": token,
        "Expiration": rfc3339(expiry),
        "LastUpdated": rfc3339(OffsetDateTime::now_utc()),
    });
    answer(StatusCode::OK, "application/json", body.to_string())
}
fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect()
}
