//! The validation the real server does that the operator can trip over: object names,
//! Secret data keys and values, the dockerconfigjson payload, and immutable Secret type.

use base64::Engine;
use serde_json::{Map, Value};

use super::kinds::KindSpec;
use super::status::{ApiError, FieldCause};

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Namespaces need a DNS-1123 label, everything else a subdomain.
pub(crate) fn name_causes(kind: &KindSpec, name: &str) -> Vec<FieldCause> {
    if name.is_empty() {
        return vec![FieldCause::required(
            "metadata.name",
            "name or generateName is required",
        )];
    }
    let (ok, msg) = if kind.plural == "namespaces" && kind.group.is_empty() {
        (is_label(name), LABEL_MSG)
    } else {
        (is_subdomain(name), SUBDOMAIN_MSG)
    };
    if ok {
        Vec::new()
    } else {
        vec![FieldCause::invalid("metadata.name", name, msg)]
    }
}

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

/// Qualified name: optional DNS-subdomain prefix and `/`, then a 1..=63 character name.
fn is_qualified_name(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Label keys and values, annotation keys and owner references, as ValidateObjectMeta does.
pub(crate) fn metadata_causes(obj: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push(FieldCause::invalid(
                    "metadata.labels",
                    k,
                    QUALIFIED_NAME_MSG,
                ));
            }
            match v.as_str() {
                Some(v) if is_label_value(v) => {}
                _ => causes.push(FieldCause::invalid(
                    "metadata.labels",
                    v.as_str().unwrap_or_default(),
                    LABEL_VALUE_MSG,
                )),
            }
        }
    }
    if let Some(ann) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in ann {
            if !is_qualified_name(k) {
                causes.push(FieldCause::invalid(
                    "metadata.annotations",
                    k,
                    QUALIFIED_NAME_MSG,
                ));
            }
            if !v.is_string() {
                causes.push(FieldCause::invalid(
                    "metadata.annotations",
                    k,
                    "annotation values must be strings",
                ));
            }
        }
    }
    if let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    {
        for r in refs {
            for field in ["apiVersion", "kind", "name", "uid"] {
                if r.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    causes.push(FieldCause::invalid(
                        format!("metadata.ownerReferences.{field}"),
                        "",
                        format!("{field} must not be empty"),
                    ));
                }
            }
        }
    }
    causes
}

/// Kind-specific checks: Secret payloads, Event consistency, Lease spec and MicroTime.
pub(crate) fn kind_causes(
    kind: &KindSpec,
    ns: &str,
    obj: &mut Value,
) -> Result<Vec<FieldCause>, ApiError> {
    match (kind.group, kind.plural) {
        ("", "secrets") => normalize_secret(obj),
        ("", "events") => {
            check_micro_time(kind, obj, "/eventTime")?;
            Ok(core_event_causes(ns, obj))
        }
        ("events.k8s.io", "events") => {
            check_micro_time(kind, obj, "/eventTime")?;
            Ok(events_v1_causes(ns, obj))
        }
        ("coordination.k8s.io", "leases") => {
            check_micro_time(kind, obj, "/spec/acquireTime")?;
            check_micro_time(kind, obj, "/spec/renewTime")?;
            Ok(lease_causes(obj))
        }
        _ => Ok(Vec::new()),
    }
}

/// MicroTime decodes only from RFC 3339 with exactly six fractional digits; anything else
/// fails decoding (400), as Go's `2006-01-02T15:04:05.000000Z07:00` layout does.
fn check_micro_time(kind: &KindSpec, obj: &Value, pointer: &str) -> Result<(), ApiError> {
    let Some(v) = obj.pointer(pointer) else {
        return Ok(());
    };
    if v.is_null() {
        return Ok(());
    }
    let s = v.as_str().unwrap_or("");
    let six_digits = s
        .split_once('.')
        .map(|(_, frac)| frac.bytes().take_while(u8::is_ascii_digit).count() == 6)
        .unwrap_or(false);
    let parses =
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok();
    if six_digits && parses {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: parsing time \"{s}\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"{s}\" as \".000000\"",
        kind.kind, kind.version, kind.kind
    )))
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// core/v1 Event: without eventTime (old style) the involved object's namespace must match
/// the event's ("default" allowed for cluster-scoped objects); with eventTime the new-style
/// fields are required.
fn core_event_causes(ns: &str, obj: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let involved_ns = str_at(obj, "/involvedObject/namespace");
    let new_style = obj.get("eventTime").is_some_and(|t| !t.is_null());
    if !new_style {
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            involved_ns == ns
        };
        if !ok {
            causes.push(FieldCause::invalid(
                "involvedObject.namespace",
                involved_ns,
                "does not match event.namespace",
            ));
        }
        return causes;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        causes.push(FieldCause::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
    reporting_causes(obj, "reportingComponent", &mut causes);
    causes
}

/// What both Event APIs require: the reporter (`reporter` names its field in each API),
/// its instance, action and reason, and a type of Normal or Warning.
fn reporting_causes(obj: &Value, reporter: &str, causes: &mut Vec<FieldCause>) {
    for field in [reporter, "reportingInstance", "action", "reason"] {
        if str_at(obj, &format!("/{field}")).is_empty() {
            causes.push(FieldCause::required(field, ""));
        }
    }
    let t = str_at(obj, "/type");
    if t != "Normal" && t != "Warning" {
        causes.push(FieldCause::invalid(
            "type",
            t,
            "has invalid value: must be Normal or Warning",
        ));
    }
}

/// events.k8s.io/v1 Event: eventTime, reportingController, reportingInstance, action, reason
/// and type (Normal or Warning) are required; note at most 1 kB.
fn events_v1_causes(ns: &str, obj: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    if obj.get("eventTime").is_none_or(Value::is_null) {
        causes.push(FieldCause::required("eventTime", ""));
    }
    let regarding_ns = str_at(obj, "/regarding/namespace");
    let ns_ok = if regarding_ns.is_empty() {
        ns == "default" || ns == "kube-system"
    } else {
        regarding_ns == ns
    };
    if !ns_ok {
        causes.push(FieldCause::invalid(
            "regarding.namespace",
            regarding_ns,
            "does not match event.namespace",
        ));
    }
    reporting_causes(obj, "reportingController", &mut causes);
    if str_at(obj, "/note").len() > 1024 {
        causes.push(FieldCause::invalid(
            "note",
            "",
            "can have at most 1024 characters",
        ));
    }
    causes
}

fn lease_causes(obj: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    if let Some(d) = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
    {
        if d <= 0 {
            causes.push(FieldCause::invalid(
                "spec.leaseDurationSeconds",
                &d.to_string(),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = obj
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
    {
        if t < 0 {
            causes.push(FieldCause::invalid(
                "spec.leaseTransitions",
                &t.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    causes
}

/// Folds `stringData` into `data` (the server never stores stringData), checks keys and
/// base64 values (400 like a decoding failure) and the typed payloads (422).
pub(crate) fn normalize_secret(obj: &mut Value) -> Result<Vec<FieldCause>, ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Ok(Vec::new());
    };
    if !m.contains_key("type") {
        m.insert("type".into(), Value::String("Opaque".into()));
    }
    let string_data = m.remove("stringData");
    let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if data.is_null() {
        *data = Value::Object(Map::new());
    }
    let Value::Object(data) = data else {
        return Err(ApiError::bad_request(
            "Secret in version \"v1\" cannot be handled as a Secret: data must be an object",
        ));
    };
    if let Some(Value::Object(sd)) = string_data {
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
    let mut causes = Vec::new();
    for (k, v) in data.iter() {
        let valid_key = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_key {
            causes.push(FieldCause::invalid(format!("data[{k}]"), k, KEY_MSG));
        }
        let Some(s) = v.as_str() else {
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal {} into Go struct field Secret.data of type []uint8",
                json_type(v)
            )));
        };
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _) => i,
                base64::DecodeError::InvalidLastSymbol(i, _) => i,
                _ => s.len(),
            };
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {at}"
            )));
        }
    }
    if m.get("type").and_then(Value::as_str) == Some("kubernetes.io/dockerconfigjson") {
        causes.extend(dockerconfigjson_causes(m));
    }
    Ok(causes)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `data[.dockerconfigjson]` must exist and hold a JSON object (ValidateSecret).
fn dockerconfigjson_causes(m: &Map<String, Value>) -> Vec<FieldCause> {
    let field = "data[.dockerconfigjson]";
    let Some(raw) = m
        .get("data")
        .and_then(|d| d.get(".dockerconfigjson"))
        .and_then(Value::as_str)
    else {
        return vec![FieldCause::required(field, "")];
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap_or_default();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(_)) => Vec::new(),
        Ok(other) => vec![FieldCause::invalid(
            field,
            "<secret contents redacted>",
            format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_type(&other)
            ),
        )],
        Err(e) => vec![FieldCause::invalid(
            field,
            "<secret contents redacted>",
            e.to_string(),
        )],
    }
}

/// A Secret's `type` cannot change, and neither can the data of an `immutable` Secret.
pub(crate) fn secret_update_causes(old: &Value, new: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let old_type = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let new_type = new.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    if old_type != new_type {
        causes.push(FieldCause::invalid("type", new_type, "field is immutable"));
    }
    if old.get("immutable") == Some(&Value::Bool(true)) && old.get("data") != new.get("data") {
        causes.push(FieldCause {
            reason: "FieldValueForbidden",
            field: "data".into(),
            detail: "field is immutable when `immutable` is set".into(),
            value: None,
        });
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn micro_time_needs_exactly_six_fractional_digits() {
        let k = crate::k8s::kinds::LEASES;
        let mut ok = json!({"spec": {"renewTime": "2026-01-02T03:04:05.123456Z"}});
        assert!(kind_causes(&k, "default", &mut ok).unwrap().is_empty());
        for bad in [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123Z",
            "2026-01-02T03:04:05.123456789Z",
        ] {
            let mut o = json!({"spec": {"renewTime": bad}});
            assert_eq!(
                kind_causes(&k, "default", &mut o).unwrap_err().code,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn events_about_cluster_scoped_objects_live_in_default() {
        let k = crate::k8s::kinds::EVENTS;
        let mut old_style = json!({"involvedObject": {"kind": "ECRPullSecret", "name": "p"}});
        assert!(kind_causes(&k, "default", &mut old_style)
            .unwrap()
            .is_empty());
        assert_eq!(kind_causes(&k, "team", &mut old_style).unwrap().len(), 1);
        let k = crate::k8s::kinds::EVENTS_V1;
        let mut v1 = json!({"eventTime": "2026-01-02T03:04:05.000000Z", "regarding": {"name": "p"}, "reportingController": "c", "reportingInstance": "i", "action": "Sync", "reason": "Synced", "type": "Normal"});
        assert!(kind_causes(&k, "default", &mut v1).unwrap().is_empty());
        let mut missing = json!({"eventTime": "2026-01-02T03:04:05.000000Z", "regarding": {"name": "p"}, "type": "Info"});
        assert_eq!(kind_causes(&k, "default", &mut missing).unwrap().len(), 5);
    }

    #[test]
    fn names_follow_dns_1123() {
        assert!(is_subdomain("a.b-c"));
        assert!(!is_subdomain("A"));
        assert!(!is_subdomain("-a"));
        assert!(!is_subdomain("a_b"));
    }

    #[test]
    fn label_keys_and_values_follow_qualified_name_rules() {
        let ok =
            json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "ecr-creds", "a": ""}}});
        assert!(metadata_causes(&ok).is_empty());
        let bad = json!({"metadata": {"labels": {"-a": "x", "b": "bad value"}}});
        assert_eq!(metadata_causes(&bad).len(), 2);
        let bad_owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n"}]}});
        assert_eq!(metadata_causes(&bad_owner).len(), 1);
    }

    #[test]
    fn dockerconfigjson_must_be_present_and_a_json_object() {
        let mut s = json!({"type": "kubernetes.io/dockerconfigjson", "data": {}});
        assert_eq!(normalize_secret(&mut s).unwrap().len(), 1);
        let mut s = json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}});
        assert!(normalize_secret(&mut s).unwrap().is_empty());
        assert!(s.get("stringData").is_none());
        let mut s = json!({"type": "Opaque", "data": {"k": "!!"}});
        assert_eq!(normalize_secret(&mut s).unwrap_err().code, 400);
    }
}
