//! JSON bodies in and out: the response builders and the request-body reader that both the
//! resource API and the `/_emulator/` control endpoints use. A file of its own so neither
//! side has to import the other for them.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

use super::status::ApiError;

pub(super) type Body = BoxBody<Bytes, Infallible>;

pub(super) fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(super) fn error_response(e: &ApiError, retry_after: Option<u32>) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_value());
    if let Some(s) = retry_after {
        if let Ok(v) = header::HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

pub(super) async fn read_json(req: Request<Incoming>) -> Result<(Option<String>, Value), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok((ct, Value::Null));
    }
    // Server-side apply bodies are YAML (JSON is YAML too).
    let v = if ct.as_deref() == Some("application/apply-patch+yaml") {
        serde_yaml::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))?
    };
    Ok((ct, v))
}
