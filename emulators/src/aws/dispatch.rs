//! One request, from arrival to answer: which endpoint it is for (path, method,
//! `X-Amz-Target`), the counters and headers tests read back, the fault it may meet,
//! then the endpoint's own handler.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

use super::answers::{answer, json_error, lock, xml_error, Answer};
use super::auth;
use super::config::{
    AwsEmulatorConfig, Fault, CONTAINER_PATH, ECR_PUBLIC_TARGET, ECR_TARGET, IMDS_CREDENTIALS_PATH,
    IMDS_TOKEN_PATH,
};
use super::credentials::{container, imds, sts};
use super::password::ecr_password;
use super::rolesanywhere;
use super::state::{check_signature, take_fault, State};

pub(super) async fn handle(state: &State, req: Request<Incoming>) -> Answer {
    state.counters.total.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::BAD_REQUEST, "text/plain", "unreadable body"),
    };
    let path = parts.uri.path().to_string();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(endpoint) = endpoint(&parts.method, &path, &target) else {
        return answer(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no such endpoint in the AWS emulator",
        );
    };
    lock(&state.last_headers).insert(endpoint, parts.headers.clone());
    count(state, endpoint, &parts.method);
    if let Some(fault) = take_fault(state) {
        if let Some(faulted) = meet(fault).await {
            return faulted;
        }
    }
    let config = lock(&state.config).clone();
    match endpoint {
        "ecr" | "ecr-public" => ecr(state, &config, &parts, &body, endpoint),
        "sts" => sts(state, &parts, &body),
        "imds" => imds(state, &config, &parts.method, &path, &parts.headers),
        "rolesanywhere" => {
            let arrived = rolesanywhere::Arrived {
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                body: &body,
            };
            rolesanywhere::create_session(state, config.roles_anywhere.as_ref(), &arrived)
        }
        _ => container(state, &config, &parts.headers),
    }
}

/// The endpoint a request is for, by the name tests read counters and headers under.
fn endpoint(method: &Method, path: &str, target: &str) -> Option<&'static str> {
    Some(match (method, path, target) {
        (&Method::PUT, IMDS_TOKEN_PATH, _) => "imds",
        (&Method::GET, p, _) if p.starts_with(IMDS_CREDENTIALS_PATH) => "imds",
        (&Method::GET, CONTAINER_PATH, _) => "container",
        (&Method::POST, "/", ECR_TARGET) => "ecr",
        (&Method::POST, "/", ECR_PUBLIC_TARGET) => "ecr-public",
        (&Method::POST, "/", "") => "sts",
        (&Method::POST, "/sessions", _) => "rolesanywhere",
        _ => return None,
    })
}

/// Counts the request under its endpoint (STS counts by action, in `sts`).
fn count(state: &State, endpoint: &str, method: &Method) {
    let c = &state.counters;
    let counter = match endpoint {
        "ecr" => &c.ecr,
        "ecr-public" => &c.ecr_public,
        "container" => &c.container,
        "imds" if method == Method::PUT => &c.imds_token,
        "imds" => &c.imds_credentials,
        _ => return,
    };
    counter.fetch_add(1, Ordering::SeqCst);
}

/// The answer a fault gives instead of the endpoint's; `None` once a latency fault has
/// been waited out and the normal answer follows.
async fn meet(fault: Fault) -> Option<Answer> {
    Some(match fault {
        Fault::Throttle => json_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        ),
        Fault::ServerError => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "emulated server error",
        ),
        Fault::AccessDenied => json_error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "User is not authorized to perform: ecr:GetAuthorizationToken",
        ),
        Fault::XmlError(code) => xml_error(StatusCode::BAD_REQUEST, &code, "emulated XML error"),
        Fault::Html => answer(
            StatusCode::BAD_GATEWAY,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        ),
        Fault::Truncated => answer(
            StatusCode::OK,
            "application/x-amz-json-1.1",
            r#"{"authorizationData":[{"authorizationTok"#,
        ),
        Fault::Latency(d) => {
            tokio::time::sleep(d).await;
            return None;
        }
    })
}

/// ECR and ECR Public GetAuthorizationToken: a signed request gets a token whose
/// password is the configured one (or a fresh random one), remembered for the tests.
fn ecr(
    state: &State,
    config: &AwsEmulatorConfig,
    parts: &http::request::Parts,
    body: &[u8],
    endpoint: &str,
) -> Answer {
    let region = match check_signature(state, parts, body, endpoint) {
        Ok(region) => region,
        Err(refusal) => return auth::refused(&refusal, auth::Protocol::Json),
    };
    let public = endpoint == "ecr-public";
    let expires = OffsetDateTime::now_utc() + config.token_lifetime;
    let password = config.token_password.clone().unwrap_or_else(ecr_password);
    let token = STANDARD.encode(format!("AWS:{password}"));
    let expires_at = expires.unix_timestamp() as f64;
    lock(&state.issued_ecr).insert(token.clone(), expires.unix_timestamp());
    let body = if public {
        serde_json::json!({"authorizationData": {"authorizationToken": token, "expiresAt": expires_at}})
    } else {
        let region = region.unwrap_or(config.default_region.clone());
        serde_json::json!({"authorizationData": [{
            "authorizationToken": token,
            "expiresAt": expires_at,
            "proxyEndpoint": format!("https://{}.dkr.ecr.{region}.amazonaws.com", config.account_id),
        }]})
    };
    answer(
        StatusCode::OK,
        "application/x-amz-json-1.1",
        body.to_string(),
    )
}
