//! Requests over loopback, through the emulators crate's one client
//! (`emulators::client`, which the demo and the bench use too).

use std::net::SocketAddr;

use serde_json::Value;

pub(crate) use emulators::client::{get, Answer};

/// One request to the Kubernetes emulator's real API, as another client would send it:
/// `(status code, JSON body or Null)`. `body` is `(content type, JSON)`.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &Value)>,
) -> (u16, Value) {
    let body = body.map(|(content_type, value)| {
        (
            content_type,
            serde_json::to_vec(value).expect("a JSON body"),
        )
    });
    let answer = emulators::client::request(addr, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}

/// The person at the keyboard in tests: the cluster admin, not the operator's
/// ServiceAccount the emulator runs every other request as (its admission policy lets
/// the operator touch no CR but its status and finalizer).
pub(crate) const ADMIN_USER: &str = "kubernetes-admin";

/// [`http`] as [`ADMIN_USER`] (the emulator honours `Impersonate-User`).
pub(crate) async fn http_as_admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &Value)>,
) -> (u16, Value) {
    let body = body.map(|(content_type, value)| {
        (
            content_type,
            serde_json::to_vec(value).expect("a JSON body"),
        )
    });
    let answer = emulators::client::request_with(
        addr,
        method,
        path,
        body,
        &[("impersonate-user", ADMIN_USER)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}
