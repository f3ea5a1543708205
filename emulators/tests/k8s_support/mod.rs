//! Requests to the emulator in its own tests, through the crate's loopback client
//! (`emulators::client`), independent of the operator's client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use emulators::client;
use emulators::k8s::EmulatorConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

/// The emulator as these semantics tests need it: requests run as the cluster admin, so
/// they may write any object. The operator's admission policy (on by default, for the
/// operator's identity) has its own tests in k8s_admission.rs.
pub(crate) fn admin_config() -> EmulatorConfig {
    EmulatorConfig {
        user: None,
        ..EmulatorConfig::default()
    }
}

pub(crate) struct Api {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

pub(crate) struct Reply {
    pub code: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Api {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Api { addr, token: None }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Option<&Value>,
    ) -> hyper::Response<Incoming> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        self.send_bytes(method, path, ct, bytes).await
    }

    async fn send_bytes(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        bytes: Vec<u8>,
    ) -> hyper::Response<Incoming> {
        let mut req = hyper::Request::builder().method(method).uri(path);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(Bytes::from(bytes))).unwrap();
        client::send(self.addr, req).await.expect("send")
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        Reply::read(self.send(method, path, ct, body).await).await
    }

    /// A request with a raw (non-JSON) body.
    pub(crate) async fn call_raw(
        &self,
        method: &str,
        path: String,
        ct: &str,
        body: Vec<u8>,
    ) -> Reply {
        Reply::read(self.send_bytes(method, &path, Some(ct), body).await).await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, None).await
    }
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some("application/json"), Some(body))
            .await
    }
    pub(crate) async fn put(&self, path: &str, body: &Value) -> Reply {
        self.call("PUT", path, Some("application/json"), Some(body))
            .await
    }
    pub(crate) async fn patch(&self, path: &str, ct: &str, body: &Value) -> Reply {
        self.call("PATCH", path, Some(ct), Some(body)).await
    }
    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None, None).await
    }

    /// Opens a watch; `path` includes the query.
    pub(crate) async fn watch(&self, path: &str) -> Watch {
        let resp = self.send("GET", path, None, None).await;
        Watch {
            code: resp.status().as_u16(),
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

impl Reply {
    /// The whole answer; a non-empty body must be JSON.
    async fn read(resp: hyper::Response<Incoming>) -> Reply {
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        Reply {
            code,
            headers,
            body,
        }
    }
}

pub(crate) struct Watch {
    pub code: u16,
    body: Incoming,
    buf: Vec<u8>,
}

impl Watch {
    /// Next event, or None at a clean end of stream (or an error).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("event json"));
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Next event within `d`, panicking on timeout.
    pub(crate) async fn next_within(&mut self, d: Duration) -> Option<Value> {
        tokio::time::timeout(d, self.next())
            .await
            .expect("watch event in time")
    }

    /// Next non-BOOKMARK event.
    pub(crate) async fn next_change(&mut self) -> Option<Value> {
        loop {
            let ev = self.next_within(Duration::from_secs(5)).await?;
            if ev["type"] != "BOOKMARK" {
                return Some(ev);
            }
        }
    }
}

pub(crate) fn ev(e: &Value) -> (String, String) {
    (
        e["type"].as_str().unwrap_or("").to_string(),
        e["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}
