//! Structural-schema handling for custom resources, as the real server does it from a CRD's
//! `openAPIV3Schema`: prune unknown fields, apply defaults, then validate (types, required,
//! enum, lengths, patterns, item counts, date-time formats, map-list keys, and the CEL rules
//! of `x-kubernetes-validations` with `self` and, on updates, `oldSelf`: transition rules
//! run only where an old value exists at the same place, found through object properties
//! and map-list keys, as on the real server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use super::cel::{to_cel, Evaluation, Expr};
use super::status::FieldCause;

/// Drops fields the schema does not declare (unless it preserves unknown fields).
pub(crate) fn prune(obj: &mut Value, schema: &Value) {
    prune_at(obj, schema, true);
}

fn prune_at(obj: &mut Value, schema: &Value, root: bool) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match obj {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(sub) => {
                        if let Some(v) = m.get_mut(&k) {
                            prune_at(v, sub, false);
                        }
                    }
                    None if props.is_some()
                        || schema.get("type").and_then(Value::as_str) == Some("object") =>
                    {
                        m.remove(&k);
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for it in items {
                    prune_at(it, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

/// Fills `default`s of absent properties inside objects that are present.
pub(crate) fn apply_defaults(obj: &mut Value, schema: &Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = sub.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = m.get_mut(k) {
                        apply_defaults(v, sub);
                    }
                }
            }
            if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in m.values_mut() {
                    apply_defaults(v, add);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for it in items {
                    apply_defaults(it, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Every schema violation, with the real server's field paths and messages. `old` is the
/// stored object on updates (for `oldSelf`).
pub(crate) fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    validate_at(obj, old, schema, "", &mut causes);
    causes
}

/// A CRD's rules, compiled once per text.
fn compiled(rule: &str) -> Result<Arc<Expr>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Expr>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(e) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(rule) {
        return Ok(e.clone());
    }
    let e = Arc::new(Expr::compile(rule)?);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(rule.to_string(), e.clone());
    Ok(e)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn cause(reason: &'static str, field: &str, value: Option<String>, detail: String) -> FieldCause {
    FieldCause {
        reason,
        field: field.to_string(),
        detail,
        value,
    }
}

fn validate_at(
    v: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    out: &mut Vec<FieldCause>,
) {
    let shown = if path.is_empty() {
        "body".to_string()
    } else {
        path.to_string()
    };
    if v.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            let t = schema["type"].as_str().unwrap_or("");
            out.push(cause(
                "FieldValueInvalid",
                &shown,
                Some("null".into()),
                format!("{shown} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            out.push(cause(
                "FieldValueTypeInvalid",
                &shown,
                Some(got.into()),
                format!("{shown} in body must be of type {want}: \"{got}\""),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options
                .iter()
                .map(|o| format!("\"{}\"", render(o)))
                .collect();
            out.push(cause(
                "FieldValueNotSupported",
                &shown,
                Some(render(v)),
                format!("supported values: {}", list.join(", ")),
            ));
        }
    }
    match v {
        Value::String(s) => validate_string(s, schema, &shown, out),
        Value::Number(n) => validate_number(n, schema, &shown, out),
        Value::Array(items) => validate_array(items, old, schema, (path, &shown), out),
        Value::Object(m) => validate_object(m, old, schema, path, out),
        _ => {}
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate_rule(v, old, rule, path, &shown, out);
    }
}

fn validate_number(n: &serde_json::Number, schema: &Value, shown: &str, out: &mut Vec<FieldCause>) {
    let x = n.as_f64().unwrap_or(0.0);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if x < min {
            out.push(cause(
                "FieldValueInvalid",
                shown,
                Some(n.to_string()),
                format!("{shown} in body should be greater than or equal to {min}"),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if x > max {
            out.push(cause(
                "FieldValueInvalid",
                shown,
                Some(n.to_string()),
                format!("{shown} in body should be less than or equal to {max}"),
            ));
        }
    }
}

/// Item counts, each item against `items`, and the list type's uniqueness rules.
fn validate_array(
    items: &[Value],
    old: Option<&Value>,
    schema: &Value,
    (path, shown): (&str, &str),
    out: &mut Vec<FieldCause>,
) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if items.len() as u64 > max {
            out.push(cause(
                "FieldValueTooMany",
                shown,
                None,
                format!("Too many: {}: must have at most {max} items", items.len()),
            ));
        }
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if (items.len() as u64) < min {
            out.push(cause(
                "FieldValueInvalid",
                shown,
                None,
                format!("{shown} in body should have at least {min} items"),
            ));
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, it) in items.iter().enumerate() {
            let old_it = old_item(it, old, schema);
            validate_at(it, old_it, item_schema, &format!("{path}[{i}]"), out);
        }
    }
    validate_list_type(items, schema, path, out);
}

/// The old item of a map list with the same keys as `item`; None for other lists, whose
/// items have no identity across updates.
fn old_item<'o>(item: &Value, old: Option<&'o Value>, schema: &Value) -> Option<&'o Value> {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    old?.as_array()?
        .iter()
        .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
}

/// One `x-kubernetes-validations` entry: rule, message, messageExpression, reason,
/// fieldPath. A rule that uses `oldSelf` is a transition rule, skipped without an old value.
fn validate_rule(
    v: &Value,
    old: Option<&Value>,
    rule: &Value,
    path: &str,
    shown: &str,
    out: &mut Vec<FieldCause>,
) {
    let src = rule.get("rule").and_then(Value::as_str).unwrap_or("");
    let expr = match compiled(src) {
        Ok(e) => e,
        // The real server refuses such a CRD; the emulator reports it on every write.
        Err(e) => {
            out.push(cause(
                "FieldValueInvalid",
                shown,
                Some(type_name(v).into()),
                e,
            ));
            return;
        }
    };
    if expr.uses("oldSelf") && old.is_none() {
        return;
    }
    let mut bindings = vec![("self", to_cel(v))];
    if let Some(o) = old {
        bindings.push(("oldSelf", to_cel(o)));
    }
    let ev = Evaluation::new(bindings, &[]);
    let detail = match ev.eval_bool(&expr) {
        Ok(true) => return,
        Ok(false) => {
            let from_expr = rule
                .get("messageExpression")
                .and_then(Value::as_str)
                .and_then(|m| compiled(m).ok())
                .and_then(|m| match ev.eval(&m) {
                    Ok(cel::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                    _ => None,
                });
            from_expr
                .or_else(|| {
                    rule.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| format!("failed rule: {src}"))
        }
        Err(e) => format!("rule evaluation error: {e}"),
    };
    let reason = match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => "FieldValueForbidden",
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    };
    let field = match rule.get("fieldPath").and_then(Value::as_str) {
        Some(fp) if !fp.is_empty() => join(path, fp.trim_start_matches('.')),
        _ => shown.to_string(),
    };
    out.push(cause(reason, &field, Some(type_name(v).into()), detail));
}

fn validate_string(s: &str, schema: &Value, shown: &str, out: &mut Vec<FieldCause>) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            out.push(cause(
                "FieldValueTooLong",
                shown,
                None,
                format!("Too long: may not be longer than {max}"),
            ));
        }
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            out.push(cause(
                "FieldValueInvalid",
                shown,
                Some(s.into()),
                format!("{shown} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        // The schema came from our own CRD; an unparsable pattern is a CRD bug the real
        // server would have rejected at registration, so it is reported as a violation.
        let ok = regex_lite::Regex::new(p)
            .map(|re| re.is_match(s))
            .unwrap_or(false);
        if !ok {
            out.push(cause(
                "FieldValueInvalid",
                shown,
                Some(s.into()),
                format!("{shown} in body should match '{p}'"),
            ));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_err()
    {
        out.push(cause(
            "FieldValueInvalid",
            shown,
            Some(s.into()),
            format!("{shown} in body must be of type date-time: \"{s}\""),
        ));
    }
}

fn validate_object(
    m: &Map<String, Value>,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    out: &mut Vec<FieldCause>,
) {
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = req.as_str() {
            if !m.contains_key(k) {
                out.push(cause(
                    "FieldValueRequired",
                    &join(path, k),
                    None,
                    String::new(),
                ));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in m {
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
            validate_at(v, old.and_then(|o| o.get(k)), sub, &join(path, k), out);
        }
    }
}

fn validate_list_type(items: &[Value], schema: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let keys: Vec<&str> = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default(),
        Some("set") => Vec::new(),
        _ => return,
    };
    let mut seen: Vec<Value> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let id = if keys.is_empty() {
            it.clone()
        } else {
            Value::Array(
                keys.iter()
                    .map(|k| it.get(*k).cloned().unwrap_or(Value::Null))
                    .collect(),
            )
        };
        if seen.contains(&id) {
            out.push(cause(
                "FieldValueDuplicate",
                &format!("{path}[{i}]"),
                Some(render(&id)),
                String::new(),
            ));
        } else {
            seen.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["name"],
                "x-kubernetes-validations": [{"rule": "has(self.a) || has(self.b)", "message": "set a or b"}],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                    "a": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                    "b": {"type": "object", "additionalProperties": {"type": "string"}},
                    "mode": {"type": "string", "enum": ["X", "Y"], "default": "X"},
                    "list": {"type": "array", "default": ["d"], "items": {"type": "string"}}
            }},
            "status": {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}}
        }})
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"name": "a", "a": [], "junk": 1}, "status": {"extra": true}});
        prune(&mut o, &schema());
        apply_defaults(&mut o, &schema());
        assert_eq!(
            o["spec"],
            json!({"name": "a", "a": [], "mode": "X", "list": ["d"]})
        );
        assert_eq!(o["status"], json!({}));
        assert_eq!(o["metadata"]["name"], "n");
    }

    #[test]
    fn violations_name_the_field_like_the_real_server() {
        let o = json!({"spec": {"name": "ABCDEFG", "a": ["1", "2", "3"], "mode": "Z"}, "status": {"when": "yesterday"}});
        let fields: Vec<String> = validate(&o, None, &schema())
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert!(fields.contains(&"spec.name".to_string()));
        assert!(fields.contains(&"spec.a".to_string()));
        assert!(fields.contains(&"spec.mode".to_string()));
        assert!(fields.contains(&"status.when".to_string()));
        let missing = validate(&json!({"spec": {"name": "ok"}}), None, &schema());
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].detail, "set a or b");
        assert_eq!(
            validate(&json!({}), None, &schema())[0].message(),
            "spec: Required value"
        );
    }

    #[test]
    fn cel_rules_evaluate_durations_transitions_message_expressions_and_field_paths() {
        let sch = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "!has(self.every) || duration(self.every) >= duration('1m')",
                 "messageExpression": "'every must be at least 1m, not ' + self.every",
                 "fieldPath": ".every"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable",
                 "reason": "FieldValueForbidden"},
                {"rule": "!has(self.every) || duration(self.every) < duration('24h')"}
            ],
            "properties": {"name": {"type": "string"}, "every": {"type": "string"}}}}});
        let ok = json!({"spec": {"name": "a", "every": "1h30m"}});
        assert_eq!(validate(&ok, None, &sch), vec![]);
        assert_eq!(validate(&ok, Some(&ok), &sch), vec![]);
        let short = json!({"spec": {"name": "a", "every": "30s"}});
        let c = validate(&short, None, &sch);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec.every");
        assert_eq!(c[0].detail, "every must be at least 1m, not 30s");
        let long = json!({"spec": {"name": "a", "every": "48h"}});
        assert_eq!(
            validate(&long, None, &sch)[0].detail,
            "failed rule: !has(self.every) || duration(self.every) < duration('24h')"
        );
        let garbage = json!({"spec": {"name": "a", "every": "1hx"}});
        assert!(validate(&garbage, None, &sch)
            .iter()
            .all(|c| c.detail.starts_with("rule evaluation error:")));
        // oldSelf: checked only on updates.
        let renamed = json!({"spec": {"name": "b"}});
        assert_eq!(validate(&renamed, None, &sch), vec![]);
        let c = validate(&renamed, Some(&ok), &sch);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].message(), "spec: Forbidden: name is immutable");
    }
}
