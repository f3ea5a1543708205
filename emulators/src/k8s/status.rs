//! `Status` bodies exactly as the real API server shapes them (kind Status, apiVersion v1,
//! status Failure, message, reason, details, code), so clients' error decoding is tested
//! against the real format.

use serde_json::{json, Map, Value};

use super::kinds::KindSpec;

/// A failed API call, rendered as a `Status` body with `code` as the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status, repeated in the body.
    pub code: u16,
    /// The machine-readable reason: NotFound, Conflict, Invalid...
    pub reason: &'static str,
    /// The human-readable message, worded as the real server words it.
    pub message: String,
    /// `details` (name, group, kind, causes), when the real server sends them.
    pub details: Option<Value>,
}

// === impl ApiError ===

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, kind: &KindSpec, name: &str) -> Self {
        let mut d = Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !kind.group.is_empty() {
            d.insert("group".into(), json!(kind.group));
        }
        d.insert("kind".into(), json!(kind.plural));
        self.details = Some(Value::Object(d));
        self
    }

    /// `secrets "x" not found`
    pub(crate) fn not_found(kind: &KindSpec, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", kind.qualified(), name),
        )
        .with_details(kind, name)
    }

    /// Namespace missing on create: `namespaces "x" not found`.
    pub(crate) fn namespace_not_found(ns_kind: &KindSpec, ns: &str) -> Self {
        ApiError::not_found(ns_kind, ns)
    }

    pub(crate) fn already_exists(kind: &KindSpec, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", kind.qualified(), name),
        )
        .with_details(kind, name)
    }

    pub(crate) fn conflict(kind: &KindSpec, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.qualified(),
                name
            ),
        )
        .with_details(kind, name)
    }

    /// A DELETE precondition that does not hold: 409 Conflict, worded as the real
    /// server words it (`Precondition failed: UID in precondition: a, UID in object
    /// meta: b`).
    pub(crate) fn precondition_failed(
        kind: &KindSpec,
        name: &str,
        field: &str,
        want: &str,
        have: &str,
    ) -> Self {
        let label = if field == "uid" {
            "UID"
        } else {
            "ResourceVersion"
        };
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}",
                kind.qualified(),
                name
            ),
        )
        .with_details(kind, name)
    }

    /// 422 with field causes: `Secret "x" is invalid: field: Detail`.
    pub(crate) fn invalid(kind: &KindSpec, name: &str, causes: Vec<FieldCause>) -> Self {
        let text: Vec<String> = causes.iter().map(|c| c.message()).collect();
        // Qualified kind, as the real server writes it: `Secret`, `ECRPullSecret.ecr.creds.dev`.
        let qualified = if kind.group.is_empty() {
            kind.kind.to_string()
        } else {
            format!("{}.{}", kind.kind, kind.group)
        };
        let message = if text.len() == 1 {
            format!("{qualified} \"{name}\" is invalid: {}", text[0])
        } else {
            format!("{qualified} \"{name}\" is invalid: [{}]", text.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message(), "field": c.field}))
            .collect();
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !kind.group.is_empty() {
            d.insert("group".into(), json!(kind.group));
        }
        d.insert("kind".into(), json!(kind.kind));
        d.insert("causes".into(), Value::Array(causes));
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(Value::Object(d)),
        }
    }

    /// 422 for invalid request options (not the object), e.g. a missing fieldManager.
    pub(crate) fn invalid_options(message: impl Into<String>) -> Self {
        ApiError::new(422, "Invalid", message)
    }

    /// PUT without metadata.resourceVersion on a kind that forbids unconditional updates.
    /// The real server names the resource (not the kind) here.
    pub(crate) fn resource_version_required(kind: &KindSpec, name: &str) -> Self {
        let cause = "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update";
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{name}\" is invalid: {cause}", kind.qualified()),
            details: Some(json!({
                "name": name,
                "group": kind.group,
                "kind": kind.plural,
                "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update", "field": "metadata.resourceVersion"}],
            })),
        }
    }

    /// 403 from admission: `secrets "x" is forbidden: <why>`.
    pub(crate) fn forbidden(kind: &KindSpec, name: &str, why: &str) -> Self {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", kind.qualified()),
        )
        .with_details(kind, name)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub(crate) fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub(crate) fn too_old_resource_version(requested: u64, oldest: u64) -> Self {
        ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub(crate) fn method_not_allowed(method: &str) -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})"),
        )
    }

    pub(crate) fn path_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// The Status object as JSON.
    pub(crate) fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        // Errors the server did not classify carry no reason at all.
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// One field error inside a 422 Invalid, as apimachinery's field.Error renders it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldCause {
    pub reason: &'static str,
    pub field: String,
    pub detail: String,
    /// The offending value, rendered in the message (`Invalid value: "x": detail`).
    pub value: Option<String>,
}

// === impl FieldCause ===

impl FieldCause {
    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldCause {
            reason: "FieldValueRequired",
            field: field.into(),
            detail: detail.into(),
            value: None,
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: &str,
        detail: impl Into<String>,
    ) -> Self {
        FieldCause {
            reason: "FieldValueInvalid",
            field: field.into(),
            detail: detail.into(),
            value: Some(value.to_string()),
        }
    }

    pub(crate) fn message(&self) -> String {
        let v = self.value.as_deref().unwrap_or("");
        match self.reason {
            "FieldValueRequired" if self.detail.is_empty() => {
                format!("{}: Required value", self.field)
            }
            "FieldValueRequired" => format!("{}: Required value: {}", self.field, self.detail),
            "FieldValueNotSupported" => format!(
                "{}: Unsupported value: \"{v}\": {}",
                self.field, self.detail
            ),
            "FieldValueTooLong" | "FieldValueTooMany" => format!("{}: {}", self.field, self.detail),
            "FieldValueDuplicate" => format!("{}: Duplicate value: \"{v}\"", self.field),
            "FieldValueForbidden" => format!("{}: Forbidden: {}", self.field, self.detail),
            _ => format!("{}: Invalid value: \"{v}\": {}", self.field, self.detail),
        }
    }
}

/// The Success Status the server answers a DELETE of a built-in kind with.
pub(crate) fn delete_success(kind: &KindSpec, name: &str, uid: &str) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), json!(name));
    if !kind.group.is_empty() {
        details.insert("group".into(), json!(kind.group));
    }
    details.insert("kind".into(), json!(kind.plural));
    details.insert("uid".into(), json!(uid));
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": Value::Object(details),
    })
}
