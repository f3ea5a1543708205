//! The `/_emulator/` control endpoints for the standalone binary (and any test that prefers
//! HTTP): request log, faults, RBAC policy, admission policies and denials, user, token,
//! watch drops, restart, history. Never authenticated, never logged as API requests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::admission::PolicySet;
use super::body::{error_response, json_response, read_json, Body};
use super::faults::FaultConfig;
use super::lag::WatchLag;
use super::rbac::RbacPolicy;
use super::server_state::Shared;
use super::status::ApiError;

/// Answers one control request; each group below answers the paths it owns, or None.
pub(crate) async fn admin(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    path: &str,
) -> Response<Body> {
    let method = req.method().clone();
    let body = match read_json(req).await {
        Ok((_, b)) => b,
        Err(e) => return error_response(&e, None),
    };
    observe(shared, &method, path)
        .or_else(|| faults_and_lag(shared, &method, path, &body))
        .or_else(|| access(shared, &method, path, &body))
        .or_else(|| lifecycle(shared, &method, path, &body))
        .unwrap_or_else(|| error_response(&ApiError::path_not_found(), None))
}

fn ok() -> Response<Body> {
    json_response(200, &json!({"ok": true}))
}

/// What the server saw: the request log, RBAC use, per-verb counters, the current rv.
fn observe(shared: &Shared, method: &Method, path: &str) -> Option<Response<Body>> {
    Some(match (method.clone(), path) {
        (Method::GET, "/_emulator/requests") => json_response(
            200,
            &serde_json::to_value(shared.log.all()).unwrap_or_default(),
        ),
        (Method::DELETE, "/_emulator/requests") => {
            shared.log.clear();
            ok()
        }
        (Method::GET, "/_emulator/rbac-used") => json_response(
            200,
            &serde_json::to_value(shared.log.rbac_used()).unwrap_or_default(),
        ),
        (Method::GET, "/_emulator/counters") => {
            let counts: Vec<Value> = shared
                .log
                .counts()
                .into_iter()
                .map(
                    |((verb, resource), n)| json!({"verb": verb, "resource": resource, "count": n}),
                )
                .collect();
            json_response(200, &Value::Array(counts))
        }
        (Method::GET, "/_emulator/state") => json_response(
            200,
            &json!({"resourceVersion": shared.store.current_rv().to_string()}),
        ),
        _ => return None,
    })
}

/// Injected faults and watch lag.
fn faults_and_lag(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &Value,
) -> Option<Response<Body>> {
    Some(match (method.clone(), path) {
        (Method::GET, "/_emulator/faults") => json_response(
            200,
            &serde_json::to_value(shared.faults.config()).unwrap_or_default(),
        ),
        (Method::POST | Method::PUT, "/_emulator/faults") => {
            match serde_json::from_value::<FaultConfig>(body.clone()) {
                Ok(cfg) => {
                    shared.faults.set(cfg);
                    ok()
                }
                Err(e) => {
                    error_response(&ApiError::bad_request(format!("fault config: {e}")), None)
                }
            }
        }
        (Method::DELETE, "/_emulator/faults") => {
            shared.faults.clear();
            ok()
        }
        (Method::GET, "/_emulator/watch-lag") => json_response(
            200,
            &serde_json::to_value(shared.lag.config()).unwrap_or_default(),
        ),
        (Method::POST | Method::PUT, "/_emulator/watch-lag") => {
            match serde_json::from_value::<WatchLag>(body.clone()) {
                Ok(cfg) => {
                    shared.lag.set(cfg);
                    ok()
                }
                Err(e) => error_response(&ApiError::bad_request(format!("watch lag: {e}")), None),
            }
        }
        (Method::POST, "/_emulator/watch-stall") => {
            let ms = body.get("ms").and_then(Value::as_u64).unwrap_or(1000);
            shared.lag.stall(Duration::from_millis(ms));
            ok()
        }
        _ => return None,
    })
}

/// Who may do what: RBAC policy, admission policies and their denials, user, token.
fn access(shared: &Shared, method: &Method, path: &str, body: &Value) -> Option<Response<Body>> {
    Some(match (method.clone(), path) {
        (Method::POST | Method::PUT, "/_emulator/rbac") => {
            match serde_json::from_value::<RbacPolicy>(body.clone()) {
                Ok(p) => {
                    *shared.rbac.write().unwrap_or_else(|p| p.into_inner()) = Some(p);
                    ok()
                }
                Err(e) => error_response(&ApiError::bad_request(format!("rbac policy: {e}")), None),
            }
        }
        (Method::DELETE, "/_emulator/rbac") => {
            *shared.rbac.write().unwrap_or_else(|p| p.into_inner()) = None;
            ok()
        }
        (Method::GET, "/_emulator/admission") => {
            let enabled = shared
                .admission
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            let denials = shared
                .denials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            json_response(
                200,
                &json!({"enabled": enabled, "user": shared.username(), "denials": denials}),
            )
        }
        // `{"policies": ["<YAML>", ...]}`: enforce these from now on.
        (Method::POST | Method::PUT, "/_emulator/admission") => set_admission(shared, body),
        (Method::DELETE, "/_emulator/admission") => {
            *shared.admission.write().unwrap_or_else(|p| p.into_inner()) = None;
            ok()
        }
        // `{"user": "system:serviceaccount:ns:name"}`, or null for the cluster admin.
        (Method::POST, "/_emulator/user") => {
            let user = body.get("user").and_then(Value::as_str).map(str::to_string);
            *shared.user.write().unwrap_or_else(|p| p.into_inner()) = user;
            ok()
        }
        (Method::POST, "/_emulator/token") => {
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_string);
            *shared.token.write().unwrap_or_else(|p| p.into_inner()) = token;
            ok()
        }
        _ => return None,
    })
}

fn set_admission(shared: &Shared, body: &Value) -> Response<Body> {
    let texts: Vec<String> = body
        .get("policies")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match PolicySet::parse(&texts) {
        Ok(set) => {
            *shared.admission.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(set));
            ok()
        }
        Err(e) => error_response(&ApiError::bad_request(format!("admission: {e}")), None),
    }
}

/// The server's life: watch drops, history, the 410 mode, restart.
fn lifecycle(shared: &Shared, method: &Method, path: &str, body: &Value) -> Option<Response<Body>> {
    Some(match (method.clone(), path) {
        (Method::POST, "/_emulator/drop-watches") => {
            shared.drop_watches();
            ok()
        }
        (Method::POST, "/_emulator/compact") => {
            shared.store.compact();
            ok()
        }
        (Method::POST, "/_emulator/history") => match body.get("size").and_then(Value::as_u64) {
            Some(n) => {
                shared.store.set_history_size(n as usize);
                ok()
            }
            None => error_response(&ApiError::bad_request("expected {\"size\": N}"), None),
        },
        (Method::POST, "/_emulator/expired-mode") => {
            let http = body
                .get("http_status")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            shared.expired_as_http_status.store(http, Ordering::Relaxed);
            ok()
        }
        (Method::POST, "/_emulator/restart") => {
            let refuse = body
                .get("refuse_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis)
                .unwrap_or(shared.settings.restart_refuse);
            // Answer first: the restart cuts this very connection.
            shared.request_restart(refuse);
            json_response(202, &json!({"ok": true}))
        }
        _ => return None,
    })
}
