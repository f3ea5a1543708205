//! The resource API: one handler per verb (get, list, watch, create, update, patch,
//! delete) over the store, each request's writes passing the admission gate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::admission::Admit;
use super::answer_form::AnswerForm;
use super::body::{error_response, json_response, read_json, Body};
use super::kinds::KindSpec;
use super::request_admission::RequestAdmission;
use super::route::Route;
use super::selector::{FieldSelector, LabelSelector};
use super::server_state::{impersonated, Shared};
use super::status::{self, ApiError};
use super::store::{Deleted, ListQuery, PatchType, Preconditions, Store, WriteTarget};
use super::watch::{self as watchstream, WatchFilter, WatchTiming};

/// The query parameters of one request, by name.
#[derive(Clone, Copy)]
struct Params<'a>(&'a [(String, String)]);

// === impl Params ===

impl<'a> Params<'a> {
    fn get(self, k: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// One write request's fixed parts: where it goes, which part it may change, who admits it.
struct Write<'a> {
    store: &'a Store,
    route: &'a Route,
    target: WriteTarget,
    admit: Option<&'a dyn Admit>,
    /// How the client asked to see the object it wrote.
    form: AnswerForm,
}

pub(super) async fn serve_resource(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    r: Route,
    verb: &str,
    params: &[(String, String)],
) -> Response<Body> {
    match serve_resource_inner(shared, req, r, verb, Params(params)).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, None),
    }
}

async fn serve_resource_inner(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    r: Route,
    verb: &str,
    params: Params<'_>,
) -> Result<Response<Body>, ApiError> {
    let store = &shared.store;
    let spec = *store.kinds().get(r.kind);
    let ns = r.namespace.as_deref();
    let gate = RequestAdmission {
        shared,
        user: impersonated(req.headers()).unwrap_or_else(|| shared.username()),
        verb,
    };
    let target = if r.subresource.is_some() {
        WriteTarget::Status
    } else {
        WriteTarget::Main
    };
    let w = Write {
        store,
        route: &r,
        target,
        admit: Some(&gate),
        form: AnswerForm::from_headers(req.headers()),
    };
    match verb {
        "get" => {
            let name = r.name.as_deref().unwrap_or("");
            Ok(json_response(
                200,
                &w.form.shape(store.get(r.kind, ns, name)?),
            ))
        }
        "list" => serve_list(store, &r, params),
        "watch" => serve_watch(shared, &r, params),
        "create" => {
            if spec.namespaced && ns.is_none() {
                // Only list and watch are served across namespaces.
                return Err(ApiError::method_not_allowed("POST"));
            }
            let (_, body) = read_json(req).await?;
            let created = store.create(r.kind, ns, body, target, w.admit)?;
            Ok(json_response(201, &w.form.shape(created)))
        }
        "update" => {
            let name = r.name.clone().unwrap_or_default();
            let (_, body) = read_json(req).await?;
            let replaced = store.replace(r.kind, ns, &name, body, target, w.admit)?;
            Ok(json_response(200, &w.form.shape(replaced)))
        }
        "patch" => serve_patch(&w, req, params).await,
        "delete" => serve_delete(&w, &spec, req).await,
        _ => Err(ApiError::method_not_allowed(req.method().as_str())),
    }
}

fn serve_list(store: &Store, r: &Route, params: Params<'_>) -> Result<Response<Body>, ApiError> {
    let q = ListQuery {
        labels: LabelSelector::parse(params.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(params.get("fieldSelector").unwrap_or(""))?,
        limit: params.get("limit").and_then(|l| l.parse().ok()),
        continue_token: params
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    };
    Ok(json_response(
        200,
        &store.list(r.kind, r.namespace.as_deref(), &q)?,
    ))
}

fn serve_watch(
    shared: &Arc<Shared>,
    r: &Route,
    params: Params<'_>,
) -> Result<Response<Body>, ApiError> {
    let spec = *shared.store.kinds().get(r.kind);
    let filter = WatchFilter {
        kind: r.kind,
        namespace: r.namespace.clone(),
        labels: LabelSelector::parse(params.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(params.get("fieldSelector").unwrap_or(""))?,
    };
    // timeoutSeconds=0 means "no timeout": the server's own default applies.
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(shared.settings.watch_timeout);
    let bookmarks = matches!(params.get("allowWatchBookmarks"), Some("true" | "1"));
    let send_initial = matches!(params.get("sendInitialEvents"), Some("true" | "1"));
    if send_initial && !bookmarks {
        return Err(ApiError::invalid_options(
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    let timing = WatchTiming {
        bookmarks: if bookmarks {
            shared.settings.bookmark_interval
        } else {
            None
        },
        timeout,
        initial_events_end: send_initial,
    };
    // Streaming list: the current state first, whatever resourceVersion says.
    let rv = if send_initial {
        "0"
    } else {
        params.get("resourceVersion").unwrap_or("")
    };
    let drops = shared.drops.subscribe();
    let body = match shared.store.watch(r.kind, r.namespace.as_deref(), rv) {
        Ok(start) => {
            watchstream::spawn_watch(spec, filter, start, timing, drops, shared.lag.clone(), None)
        }
        Err(e) if e.code == 410 && !shared.expired_as_http_status.load(Ordering::Relaxed) => {
            // The real server answers 200 and sends the 410 as an ERROR event, then closes.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.try_send(watchstream::error_event(&e));
            watchstream::ChannelBody::new(rx)
        }
        Err(e) => return Err(e),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.boxed())
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

async fn serve_patch(
    w: &Write<'_>,
    req: Request<Incoming>,
    params: Params<'_>,
) -> Result<Response<Body>, ApiError> {
    let (store, r, ns) = (w.store, w.route, w.route.namespace.as_deref());
    let name = r.name.clone().unwrap_or_default();
    let (ct, body) = read_json(req).await?;
    let ct = ct.unwrap_or_default();
    let ptype = match ct.as_str() {
        "application/merge-patch+json" => PatchType::Merge,
        "application/json-patch+json" => PatchType::Json,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if ptype == PatchType::Apply {
        if params.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::invalid_options(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if body.get("apiVersion").is_none() || body.get("kind").is_none() {
            return Err(ApiError::bad_request("invalid object type: /, Kind="));
        }
        if store.get(r.kind, ns, &name).is_err() && w.target == WriteTarget::Main {
            // Apply creates what does not exist yet.
            let mut obj = body;
            if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                m.entry("name")
                    .or_insert_with(|| Value::String(name.clone()));
            }
            let created = store.create(r.kind, ns, obj, w.target, w.admit)?;
            return Ok(json_response(201, &w.form.shape(created)));
        }
    }
    let patched = store.patch(r.kind, ns, &name, (ptype, &body), w.target, w.admit)?;
    Ok(json_response(200, &w.form.shape(patched)))
}

async fn serve_delete(
    w: &Write<'_>,
    spec: &KindSpec,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let r = w.route;
    let name = r.name.clone().unwrap_or_default();
    let (_, body) = read_json(req).await?;
    let precondition = |field: &str| {
        body.pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let preconditions = Preconditions {
        uid: precondition("uid"),
        resource_version: precondition("resourceVersion"),
    };
    let ns = r.namespace.as_deref();
    match w.store.delete(r.kind, ns, &name, &preconditions, w.admit)? {
        Deleted::Pending(obj) => Ok(json_response(200, &obj)),
        Deleted::Gone(obj) if spec.custom => Ok(json_response(200, &obj)),
        Deleted::Gone(obj) => {
            let uid = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok(json_response(
                200,
                &status::delete_success(spec, &name, uid),
            ))
        }
    }
}
