//! The three patch formats the operator may send: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902, with `test`) and strategic merge patch (built-in kinds only; lists are atomic
//! unless the kind names a merge key for them).

use serde_json::{Map, Value};

use super::status::ApiError;

/// RFC 7386: objects merge recursively, `null` removes, everything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Strategic merge patch: like merge patch, except lists named in `merge_lists`
/// (path, key) merge element-wise by key and honour `$patch: delete` elements, and maps
/// honour `$patch: replace`. Every other list is replaced whole.
pub(crate) fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    merge_lists: &[(&str, &str)],
) -> Result<(), ApiError> {
    smp_at(target, patch, "", merge_lists)
}

fn smp_at(
    target: &mut Value,
    patch: &Value,
    path: &str,
    lists: &[(&str, &str)],
) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k.starts_with("$retainKeys") || k == "$patch" {
            continue;
        }
        let child = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let merge_key = lists.iter().find(|(p, _)| *p == child).map(|(_, key)| *key);
        match (merge_key, v) {
            (Some(key), Value::Array(items)) => {
                let cur = t
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                if let Value::Array(cur) = cur {
                    merge_list_by_key(cur, items, key)?;
                }
            }
            _ => smp_at(t.entry(k.clone()).or_insert(Value::Null), v, &child, lists)?,
        }
    }
    Ok(())
}

fn merge_list_by_key(cur: &mut Vec<Value>, items: &[Value], key: &str) -> Result<(), ApiError> {
    for item in items {
        let Some(id) = item.get(key).cloned() else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = cur.iter().position(|c| c.get(key) == Some(&id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                cur.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => merge_patch(&mut cur[i], item),
            None => cur.push(item.clone()),
        }
    }
    Ok(())
}

/// Why a JSON patch did not apply: 400 for a malformed document, 422 for a failed `test`
/// or an operation whose path does not exist (what kube-apiserver answers since 1.12).
fn unprocessable(detail: String) -> ApiError {
    let mut e = ApiError::new(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
    e.details =
        Some(serde_json::json!({"causes": [{"reason": "FieldValueInvalid", "message": detail}]}));
    e
}

/// RFC 6902, applied atomically: on error `doc` is left unchanged.
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Array(ops) = patch else {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
        ));
    };
    let mut work = doc.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("missing path in json patch operation"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| ApiError::bad_request(format!("missing value for {name} operation")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request(format!("missing from for {name} operation")))
        };
        match name {
            "add" => add(&mut work, path, value()?)?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                remove(&mut work, path).map_err(|_| {
                    unprocessable(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                })?;
                add(&mut work, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut work, from()?)?;
                add(&mut work, path, v)?;
            }
            "copy" => {
                let v = work.pointer(&pointer(from()?)?).cloned().ok_or_else(|| {
                    unprocessable(format!(
                        "copy operation does not apply: doc is missing from path: {path}"
                    ))
                })?;
                add(&mut work, path, v)?;
            }
            "test" => {
                let want = value()?;
                if work.pointer(&pointer(path)?) != Some(&want) {
                    return Err(unprocessable(format!("testing value {path} failed")));
                }
            }
            other => return Err(ApiError::bad_request(format!("Unexpected kind: {other}"))),
        }
    }
    *doc = work;
    Ok(())
}

/// Validates a JSON pointer; serde_json's `pointer` already unescapes `~0`/`~1`.
fn pointer(path: &str) -> Result<String, ApiError> {
    if !path.is_empty() && !path.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "invalid JSON pointer: {path}"
        )));
    }
    Ok(path.to_string())
}

fn split_parent(path: &str) -> Result<(String, String), ApiError> {
    let path = pointer(path)?;
    let idx = path
        .rfind('/')
        .ok_or_else(|| ApiError::bad_request("cannot operate on the document root"))?;
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_string(), last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_parent(path)?;
    let missing = || {
        unprocessable(format!(
            "add operation does not apply: doc is missing path: {path}"
        ))
    };
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| missing())?
            };
            if i > a.len() {
                return Err(missing());
            }
            a.insert(i, value);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, last) = split_parent(path)?;
    let missing = || {
        unprocessable(format!(
            "remove operation does not apply: doc is missing path: {path}"
        ))
    };
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_null_removes_and_objects_merge() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_failed_test_leaves_document_unchanged_and_is_422() {
        let mut d = json!({"metadata": {"resourceVersion": "5"}, "x": 1});
        let p = json!([
            {"op": "replace", "path": "/x", "value": 2},
            {"op": "test", "path": "/metadata/resourceVersion", "value": "4"}
        ]);
        let e = json_patch(&mut d, &p).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(d["x"], 1);
    }

    #[test]
    fn json_patch_appends_with_dash_and_escapes_pointer() {
        let mut d = json!({"l": [{"name": "a"}], "m": {}});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/l/-", "value": {"name": "b"}},
                {"op": "add", "path": "/m/a~1b", "value": 1}
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"l": [{"name": "a"}, {"name": "b"}], "m": {"a/b": 1}})
        );
    }

    #[test]
    fn strategic_merge_replaces_atomic_lists_and_merges_keyed_lists() {
        let mut d = json!({"imagePullSecrets": [{"name": "a"}], "secrets": [{"name": "s1"}]});
        strategic_merge_patch(
            &mut d,
            &json!({"imagePullSecrets": [{"name": "b"}], "secrets": [{"name": "s2"}]}),
            &[("secrets", "name")],
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"imagePullSecrets": [{"name": "b"}], "secrets": [{"name": "s1"}, {"name": "s2"}]})
        );
    }
}
