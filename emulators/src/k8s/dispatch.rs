//! One HTTP request from arrival to answer: the `/_emulator/` control endpoints apart,
//! then route, bearer token, injected faults, RBAC, the resource API or the non-resource
//! paths (discovery, health, version), and the request log.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use super::admin;
use super::body::{error_response, json_response, Body};
use super::requests::RequestRecord;
use super::resources::serve_resource;
use super::route;
use super::server_state::{impersonated, Shared};
use super::status::ApiError;

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path.starts_with("/_emulator/") {
        return Ok(admin::admin(&shared, req, &path).await);
    }
    if req.version() == http::Version::HTTP_2 {
        shared
            .http2_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let method = req.method().as_str().to_string();
    let mut record = RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        verb: String::new(),
        group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: None,
        name: None,
        code: 0,
    };
    let params = route::query_pairs(&query);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let is_watch = matches!(param("watch"), Some("1" | "true"));
    let route = route::parse(&path, shared.store.kinds());
    if let Ok(r) = &route {
        let spec = shared.store.kinds().get(r.kind);
        record.verb = route::verb(&method, r, is_watch).to_string();
        record.group = spec.group.to_string();
        record.resource = spec.plural.to_string();
        record.subresource = r.subresource.clone().unwrap_or_default();
        record.namespace = r.namespace.clone();
        record.name = r.name.clone();
    }
    let response = if !shared.check_token(&req) {
        error_response(&ApiError::unauthorized(), None)
    } else {
        let decision = shared.faults.decide(&record.verb, &record.resource);
        if !decision.latency.is_zero() {
            tokio::time::sleep(decision.latency).await;
        }
        let response = match decision.error {
            Some((e, retry_after)) => error_response(&e, retry_after),
            None => match route {
                Ok(r) => match impersonated(req.headers())
                    .map_or_else(|| shared.authorize(&record), |_| Ok(()))
                {
                    Ok(()) => serve_resource(&shared, req, r, &record.verb, &params).await,
                    Err(e) => error_response(&e, None),
                },
                Err(e) => non_resource(&path, &shared).unwrap_or_else(|| error_response(&e, None)),
            },
        };
        if !decision.answer_delay.is_zero() {
            tokio::time::sleep(decision.answer_delay).await;
        }
        response
    };
    record.code = response.status().as_u16();
    shared.log.push(record);
    Ok(response)
}

fn non_resource(path: &str, shared: &Shared) -> Option<Response<Body>> {
    if let Some(doc) = super::discovery::document(path, shared.store.kinds()) {
        return Some(json_response(200, &doc));
    }
    match path {
        "/healthz" | "/livez" | "/readyz" => Some(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Full::new(Bytes::from_static(b"ok")).boxed())
                .ok()?,
        ),
        "/version" => Some(json_response(
            200,
            &json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0-emulator", "platform": "linux/amd64"}),
        )),
        _ => None,
    }
}
