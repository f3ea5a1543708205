//! ValidatingAdmissionPolicy enforcement (admissionregistration.k8s.io/v1), so tests run the
//! operator under the policy file the repository ships (`deploy/admission-policy.yaml`).
//!
//! What is evaluated, as kube-apiserver does: for every create, update (PUT and every patch
//! type) and delete, after the server computed the object and before it is stored, each
//! policy whose `matchConstraints.resourceRules` match (a plain resource name does not match
//! its subresources: `secrets/status` must be listed to match a status write) and that has a
//! binding whose `validationActions` include `Deny`: its `matchConditions` (all must be
//! true), then its `validations`, with `variables` computed lazily. Bindings: `object`
//! (null on DELETE), `oldObject` (null on CREATE), `request` (operation, userInfo, name,
//! namespace, kind, resource, subResource...), `params` (null: no `paramKind` support) and
//! `namespaceObject` (null). An expression that fails to evaluate denies under
//! `failurePolicy: Fail` (the default) and is skipped under `Ignore`. A Secret's `data`
//! values are `bytes` (decoded), as the API server types them (`format: byte`), so
//! `string(object.data[k])` reads the content.
//!
//! Not emulated, and refused when a policy uses it: `paramKind`/`paramRef`, non-empty
//! `namespaceSelector`/`objectSelector`, `auditAnnotations`. `Warn` and `Audit` actions are
//! accepted and do nothing.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cel::{to_cel, Evaluation, Expr};
use super::kinds::KindSpec;
use super::status::ApiError;

/// The operator's admission policy as shipped, so every test runs the operator under it.
pub const REPO_ADMISSION_POLICY: &str = include_str!("../../../deploy/admission-policy.yaml");

/// The admission operations the emulator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One write as admission sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    pub operation: Operation,
    pub kind: &'a KindSpec,
    /// "" or "status".
    pub subresource: &'a str,
    /// "" for cluster-scoped objects.
    pub namespace: &'a str,
    pub name: &'a str,
    /// The object to be stored; None on DELETE.
    pub object: Option<&'a Value>,
    /// The stored object; None on CREATE.
    pub old_object: Option<&'a Value>,
}

/// The store's hook: called with every write of a request before it is committed.
pub(crate) trait Admit: Send + Sync {
    fn admit(&self, a: &Attributes<'_>) -> Result<(), ApiError>;
}

/// A policy's refusal of one write: who refused, and the answer to send.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub policy: String,
    pub binding: String,
    pub error: ApiError,
}

/// A write a policy denied, as tests read it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The ValidatingAdmissionPolicy that denied.
    pub policy: String,
    /// The binding that put it in force.
    pub binding: String,
    /// Who made the request.
    pub user: String,
    /// RBAC verb of the request: create, update, patch, delete.
    pub verb: String,
    /// The plural, qualified outside the core group: "secrets", "ecrpullsecrets.ecr.creds.dev".
    pub resource: String,
    /// "" for cluster-scoped objects.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The message the client got (the 403's).
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RuleSpec {
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    operations: Vec<String>,
    resources: Vec<String>,
    scope: Option<String>,
}

/// A resource rule (NamedRuleWithOperations without resourceNames).
#[derive(Debug, Clone)]
struct Rule(RuleSpec);

fn any_or(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

// === impl Rule ===

impl Rule {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        let r = &self.0;
        let scope_ok = match r.scope.as_deref() {
            Some("Cluster") => !a.kind.namespaced,
            Some("Namespaced") => a.kind.namespaced,
            _ => true,
        };
        // `secrets` matches only the main resource, `secrets/status` that subresource,
        // `*` every main resource, `*/*` everything, `secrets/*` and `*/status` likewise.
        let resource_ok = r.resources.iter().any(|res| {
            let (want_res, want_sub) = match res.split_once('/') {
                Some((x, y)) => (x, Some(y)),
                None => (res.as_str(), None),
            };
            let res_ok = want_res == "*" || want_res == a.kind.plural;
            let sub_ok = match want_sub {
                None => a.subresource.is_empty(),
                Some("*") => true,
                Some(s) => s == a.subresource,
            };
            res_ok && sub_ok
        });
        any_or(&r.api_groups, a.kind.group)
            && any_or(&r.api_versions, a.kind.version)
            && any_or(&r.operations, a.operation.as_str())
            && resource_ok
            && scope_ok
    }
}

struct Validation {
    expr: Expr,
    message: Option<String>,
    message_expr: Option<Expr>,
    reason: &'static str,
}

/// One policy paired with one of its bindings, compiled.
struct Bound {
    policy: String,
    binding: String,
    fail_closed: bool,
    rules: Vec<Rule>,
    exclude: Vec<Rule>,
    /// A binding's own matchResources.resourceRules narrow the policy's.
    binding_rules: Option<Vec<Rule>>,
    binding_exclude: Vec<Rule>,
    match_conditions: Vec<(String, Expr)>,
    variables: Vec<(String, Expr)>,
    validations: Vec<Validation>,
}

/// The policies in force, compiled once.
pub(crate) struct PolicySet {
    bound: Vec<Bound>,
    /// Parsed from exactly the shipped `deploy/admission-policy.yaml`.
    shipped: bool,
}

/// One write admission evaluated, as a second CEL evaluator replays it
/// (tests/cel/second_evaluator.py): the inputs the policies saw and the verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdmissionCase {
    /// The policies in force were exactly the shipped file.
    pub shipped: bool,
    /// CEL's `request`: operation, userInfo, kind, resource, namespace, name.
    pub request: Value,
    /// CEL's `object`; null on DELETE.
    pub object: Value,
    /// CEL's `oldObject`; null on CREATE.
    pub old_object: Value,
    /// `None` when admitted; else the denial's reason and message.
    pub denied: Option<(String, String)>,
}

fn str_at<'v>(v: &'v Value, ptr: &str) -> Option<&'v str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn rules_at(v: &Value, ptr: &str) -> Result<Vec<Rule>, String> {
    match v.pointer(ptr) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(r) => serde_json::from_value::<Vec<RuleSpec>>(r.clone())
            .map(|rs| rs.into_iter().map(Rule).collect())
            .map_err(|e| format!("{ptr}: {e}")),
    }
}

fn refuse_selector(v: &Value, ptr: &str, what: &str) -> Result<(), String> {
    match v.pointer(ptr) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) if m.is_empty() => Ok(()),
        Some(_) => Err(format!("{what}: {ptr} is not emulated")),
    }
}

/// The Status reason a validation may name, and its HTTP code (the apiserver's
/// reasonToCode; anything else is refused by API validation).
fn reason_code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

fn static_reason(reason: Option<&str>) -> Result<&'static str, String> {
    Ok(match reason {
        None | Some("Invalid") => "Invalid",
        Some("Forbidden") => "Forbidden",
        Some("Unauthorized") => "Unauthorized",
        Some("RequestEntityTooLarge") => "RequestEntityTooLarge",
        Some(other) => return Err(format!("unsupported validation reason {other:?}")),
    })
}

fn compile_policy(p: &Value) -> Result<Bound, String> {
    let name = str_at(p, "/metadata/name").unwrap_or("").to_string();
    let ctx = |e: String| format!("ValidatingAdmissionPolicy {name:?}: {e}");
    if p.pointer("/spec/paramKind").is_some_and(|v| !v.is_null()) {
        return Err(ctx("paramKind is not emulated".into()));
    }
    if p.pointer("/spec/auditAnnotations")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ctx("auditAnnotations are not emulated".into()));
    }
    refuse_selector(p, "/spec/matchConstraints/namespaceSelector", "policy").map_err(ctx)?;
    refuse_selector(p, "/spec/matchConstraints/objectSelector", "policy").map_err(ctx)?;
    let named = |ptr: &str| -> Result<Vec<(String, Expr)>, String> {
        let mut out = Vec::new();
        for item in p
            .pointer(ptr)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let n = str_at(item, "/name").unwrap_or("").to_string();
            let src = str_at(item, "/expression").unwrap_or("");
            let e = Expr::compile(src).map_err(|e| ctx(format!("{ptr} {n:?}: {e}")))?;
            out.push((n, e));
        }
        Ok(out)
    };
    let mut validations = Vec::new();
    for v in p
        .pointer("/spec/validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let src = str_at(v, "/expression").unwrap_or("");
        validations.push(Validation {
            expr: Expr::compile(src).map_err(|e| ctx(format!("validation {src:?}: {e}")))?,
            message: str_at(v, "/message").map(|m| m.trim().to_string()),
            message_expr: str_at(v, "/messageExpression")
                .map(Expr::compile)
                .transpose()
                .map_err(|e| ctx(format!("messageExpression: {e}")))?,
            reason: static_reason(str_at(v, "/reason")).map_err(ctx)?,
        });
    }
    Ok(Bound {
        fail_closed: str_at(p, "/spec/failurePolicy") != Some("Ignore"),
        rules: rules_at(p, "/spec/matchConstraints/resourceRules").map_err(ctx)?,
        exclude: rules_at(p, "/spec/matchConstraints/excludeResourceRules").map_err(ctx)?,
        binding_rules: None,
        binding_exclude: Vec::new(),
        match_conditions: named("/spec/matchConditions")?,
        variables: named("/spec/variables")?,
        validations,
        policy: name,
        binding: String::new(),
    })
}

// === impl PolicySet ===

impl PolicySet {
    /// Reads ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding documents (YAML
    /// or JSON, several per text; other kinds are skipped). A policy without a binding, or
    /// a binding without `Deny`, enforces nothing, as on a real cluster.
    pub(crate) fn parse(texts: &[String]) -> Result<PolicySet, String> {
        let mut policies = Vec::new();
        let mut bindings = Vec::new();
        for text in texts {
            for doc in serde_yaml::Deserializer::from_str(text) {
                let v = Value::deserialize(doc).map_err(|e| format!("parsing YAML: {e}"))?;
                match v.get("kind").and_then(Value::as_str) {
                    Some("ValidatingAdmissionPolicy") => policies.push(v),
                    Some("ValidatingAdmissionPolicyBinding") => bindings.push(v),
                    _ => {}
                }
            }
        }
        let mut bound = Vec::new();
        for b in &bindings {
            let bname = str_at(b, "/metadata/name").unwrap_or("").to_string();
            let deny = b
                .pointer("/spec/validationActions")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "Deny"));
            let Some(policy) = policies
                .iter()
                .find(|p| str_at(p, "/metadata/name") == str_at(b, "/spec/policyName"))
            else {
                continue;
            };
            if b.pointer("/spec/paramRef").is_some_and(|v| !v.is_null()) {
                return Err(format!("binding {bname:?}: paramRef is not emulated"));
            }
            let what = format!("binding {bname:?}");
            refuse_selector(b, "/spec/matchResources/namespaceSelector", &what)?;
            refuse_selector(b, "/spec/matchResources/objectSelector", &what)?;
            let mut one = compile_policy(policy)?;
            if !deny {
                continue;
            }
            one.binding = bname;
            if b.pointer("/spec/matchResources/resourceRules").is_some() {
                one.binding_rules = Some(rules_at(b, "/spec/matchResources/resourceRules")?);
            }
            one.binding_exclude = rules_at(b, "/spec/matchResources/excludeResourceRules")?;
            bound.push(one);
        }
        let shipped = matches!(texts, [only] if only.as_str() == REPO_ADMISSION_POLICY);
        Ok(PolicySet { bound, shipped })
    }

    /// The case a second evaluator replays: what `check` saw and what it answered.
    pub(crate) fn case(
        &self,
        a: &Attributes<'_>,
        user: &str,
        verdict: &Result<(), Box<Refusal>>,
    ) -> AdmissionCase {
        AdmissionCase {
            shipped: self.shipped,
            request: request_value(a, user),
            object: a.object.cloned().unwrap_or(Value::Null),
            old_object: a.old_object.cloned().unwrap_or(Value::Null),
            denied: verdict
                .as_ref()
                .err()
                .map(|r| (r.error.reason.to_string(), r.error.message.clone())),
        }
    }

    /// Number of (policy, binding) pairs that can deny.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bound.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// The first denial, or Ok.
    pub(crate) fn check(&self, a: &Attributes<'_>, user: &str) -> Result<(), Box<Refusal>> {
        for b in &self.bound {
            if let Some((message, reason)) = b.evaluate(a, user) {
                // kube-apiserver's answer (k8s.io/apiserver/pkg/admission/plugin/policy/
                // validating/dispatcher.go, v1.30+): admission.NewForbidden's message
                // `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<policy>' with
                // binding '<binding>' denied request: <message>`, with the validation's reason
                // (Invalid when unset, so 422; Forbidden gives 403) and one cause holding the
                // policy's sentence. A failed evaluation under failurePolicy Fail is the same
                // answer with reason Invalid.
                let sentence = format!(
                    "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {message}",
                    b.policy, b.binding
                );
                let resource = a.kind.qualified();
                let full = if a.name.is_empty() {
                    format!("{resource} is forbidden: {sentence}")
                } else {
                    format!("{resource} \"{}\" is forbidden: {sentence}", a.name)
                };
                let mut e = ApiError::new(reason_code(reason), reason, full);
                let mut details = json!({"kind": a.kind.plural, "causes": [{"message": sentence}]});
                if !a.name.is_empty() {
                    details["name"] = json!(a.name);
                }
                if !a.kind.group.is_empty() {
                    details["group"] = json!(a.kind.group);
                }
                e.details = Some(details);
                return Err(Box::new(Refusal {
                    policy: b.policy.clone(),
                    binding: b.binding.clone(),
                    error: e,
                }));
            }
        }
        Ok(())
    }
}

/// `request` as policies see it (admission/v1 AdmissionRequest, empty fields omitted).
fn request_value(a: &Attributes<'_>, user: &str) -> Value {
    let mut groups = vec![json!("system:authenticated")];
    if let Some(rest) = user.strip_prefix("system:serviceaccount:") {
        groups.insert(0, json!("system:serviceaccounts"));
        if let Some((ns, _)) = rest.split_once(':') {
            groups.insert(1, json!(format!("system:serviceaccounts:{ns}")));
        }
    } else if user == "system:admin" {
        groups.insert(0, json!("system:masters"));
    }
    let gvk = json!({"group": a.kind.group, "version": a.kind.version, "kind": a.kind.kind});
    let gvr = json!({"group": a.kind.group, "version": a.kind.version, "resource": a.kind.plural});
    let mut r = json!({
        "kind": gvk, "requestKind": gvk,
        "resource": gvr, "requestResource": gvr,
        "operation": a.operation.as_str(),
        "userInfo": {"username": user, "groups": groups},
        "dryRun": false,
    });
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            r[k] = json!(v);
        }
    };
    put("subResource", a.subresource);
    put("requestSubResource", a.subresource);
    put("name", a.name);
    put("namespace", a.namespace);
    r
}

/// An object as a policy sees it: JSON as CEL, except a Secret's `data` values, which
/// the API server's schema types as `bytes` (base64 on the wire, decoded in CEL).
fn typed(kind: &KindSpec, object: Option<&Value>) -> cel::Value {
    use base64::Engine;
    let Some(object) = object else {
        return cel::Value::Null;
    };
    let is_secret = kind.group.is_empty() && kind.plural == "secrets";
    let (Some(members), true) = (object.as_object(), is_secret) else {
        return to_cel(object);
    };
    let mut map: std::collections::HashMap<String, cel::Value> = members
        .iter()
        .map(|(k, v)| (k.clone(), to_cel(v)))
        .collect();
    if let Some(Value::Object(data)) = object.get("data") {
        let bytes: std::collections::HashMap<String, cel::Value> = data
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_else(|_| text.as_bytes().to_vec());
                (k.clone(), cel::Value::Bytes(std::sync::Arc::new(decoded)))
            })
            .collect();
        map.insert("data".into(), cel::Value::from(bytes));
    }
    cel::Value::from(map)
}

// === impl Bound ===

impl Bound {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(a))
            && !self.exclude.iter().any(|r| r.matches(a))
            && self
                .binding_rules
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| r.matches(a)))
            && !self.binding_exclude.iter().any(|r| r.matches(a))
    }

    /// Some((message, reason)) when this policy denies the write.
    fn evaluate(&self, a: &Attributes<'_>, user: &str) -> Option<(String, &'static str)> {
        if !self.matches(a) {
            return None;
        }
        let bindings = vec![
            ("object", typed(a.kind, a.object)),
            ("oldObject", typed(a.kind, a.old_object)),
            ("request", to_cel(&request_value(a, user))),
            ("params", cel::Value::Null),
            ("namespaceObject", cel::Value::Null),
        ];
        let ev = Evaluation::new(bindings, &self.variables);
        // Every condition must hold; a false one wins over an error (matchConditions).
        let mut error = None;
        for (name, c) in &self.match_conditions {
            match ev.eval_bool(c) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    error.get_or_insert(format!("failed to evaluate matchCondition {name:?}: {e}"));
                }
            }
        }
        if let Some(e) = error {
            return self.fail_closed.then_some((e, "Invalid"));
        }
        for v in &self.validations {
            match ev.eval_bool(&v.expr) {
                Ok(true) => {}
                Ok(false) => return Some((Self::message(&ev, v), v.reason)),
                Err(e) if self.fail_closed => {
                    return Some((
                        format!("expression '{}' resulted in error: {e}", v.expr.source),
                        "Invalid",
                    ))
                }
                Err(_) => {}
            }
        }
        None
    }

    /// messageExpression when it gives one line of at most 5120 bytes, else message, else
    /// the expression, as the apiserver picks it.
    fn message(ev: &Evaluation<'_>, v: &Validation) -> String {
        let evaluated = v.message_expr.as_ref().and_then(|m| match ev.eval(m) {
            Ok(cel::Value::String(s)) => {
                let s = s.trim().to_string();
                (!s.is_empty() && s.len() <= 5120 && !s.contains('\n')).then_some(s)
            }
            _ => None,
        });
        evaluated
            .or_else(|| v.message.clone().filter(|m| !m.is_empty()))
            .unwrap_or_else(|| format!("failed expression: {}", v.expr.source.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::kinds::{SECRETS, SERVICE_ACCOUNTS};

    const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: p}
spec:
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["secrets"]}
  matchConditions:
    - {name: jane, expression: "request.userInfo.username == 'jane'"}
  variables:
    - {name: t, expression: "object.type"}
  validations:
    - expression: "variables.t != 'Opaque'"
    - expression: "!has(object.data) || size(object.data) < 2"
      reason: Forbidden
      messageExpression: "'too many keys: ' + string(size(object.data))"
    - expression: "object.nope == 1"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: b}
spec: {policyName: p, validationActions: [Deny]}
"#;

    fn attrs<'a>(op: Operation, sub: &'a str, obj: &'a Value) -> Attributes<'a> {
        Attributes {
            operation: op,
            kind: &SECRETS,
            subresource: sub,
            namespace: "ns",
            name: "s",
            object: Some(obj),
            old_object: None,
        }
    }

    #[test]
    fn a_failed_validation_answers_like_kube_apiserver() {
        let set = PolicySet::parse(&[POLICY.to_string()]).unwrap();
        let obj = json!({"type": "Opaque"});
        let r = set
            .check(&attrs(Operation::Create, "", &obj), "jane")
            .unwrap_err();
        assert_eq!((r.policy.as_str(), r.binding.as_str()), ("p", "b"));
        let e = r.error;
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "secrets \"s\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: failed expression: variables.t != 'Opaque'"
        );
        let d = e.details.unwrap();
        assert_eq!(d["kind"], "secrets");
        assert_eq!(d["name"], "s");
        assert_eq!(
            d["causes"][0]["message"],
            "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: failed expression: variables.t != 'Opaque'"
        );
    }

    #[test]
    fn reason_message_expression_and_evaluation_errors() {
        let set = PolicySet::parse(&[POLICY.to_string()]).unwrap();
        let obj = json!({"type": "x", "data": {"a": "", "b": ""}});
        let e = set
            .check(&attrs(Operation::Update, "", &obj), "jane")
            .unwrap_err()
            .error;
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert!(
            e.message.ends_with("denied request: too many keys: 2"),
            "{}",
            e.message
        );
        let obj = json!({"type": "x"});
        let e = set
            .check(&attrs(Operation::Create, "", &obj), "jane")
            .unwrap_err()
            .error;
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .contains("expression 'object.nope == 1' resulted in error"),
            "{}",
            e.message
        );
    }

    #[test]
    fn other_users_operations_subresources_and_kinds_are_not_matched() {
        let set = PolicySet::parse(&[POLICY.to_string()]).unwrap();
        let obj = json!({"type": "Opaque"});
        assert!(set
            .check(&attrs(Operation::Create, "", &obj), "joe")
            .is_ok());
        assert!(set
            .check(&attrs(Operation::Delete, "", &obj), "jane")
            .is_ok());
        assert!(set
            .check(&attrs(Operation::Update, "status", &obj), "jane")
            .is_ok());
        let mut a = attrs(Operation::Create, "", &obj);
        a.kind = &SERVICE_ACCOUNTS;
        assert!(set.check(&a, "jane").is_ok());
    }

    #[test]
    fn without_a_deny_binding_a_policy_enforces_nothing() {
        let warn = POLICY.replace("[Deny]", "[Warn]");
        assert!(PolicySet::parse(&[warn]).unwrap().is_empty());
        let unbound = POLICY.split("---").next().unwrap().to_string();
        assert!(PolicySet::parse(&[unbound]).unwrap().is_empty());
    }

    #[test]
    fn the_shipped_policy_compiles() {
        let set = PolicySet::parse(&[REPO_ADMISSION_POLICY.to_string()]).unwrap();
        assert_eq!(set.len(), 1);
    }
}
