//! How the emulator answers: a body with its content type, and AWS's two error shapes
//! (JSON 1.1 with `x-amzn-ErrorType`, and the query protocol's XML `<ErrorResponse>`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use std::sync::Mutex;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) type Answer = Response<Full<Bytes>>;

pub(super) fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

pub(super) fn json_error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut r = answer(status, "application/x-amz-json-1.1", body);
    if let Ok(v) = code.parse() {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

pub(super) fn xml_error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>emu</RequestId></ErrorResponse>"
    );
    answer(status, "text/xml", body)
}
