//! The CR's status and events: computed from a reconcile's outcome, written only when
//! they change.

use super::spec::{Condition, NamespaceFailure, Status, MAX_REPORTED_FAILURES};

/// Condition reasons, CamelCase as Kubernetes expects.
pub mod reason {
    pub const TOKEN_FETCHED: &str = "TokenFetched";
    pub const AWS_ERROR: &str = "AwsError";
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
    pub const NAMESPACE_ERRORS: &str = "NamespaceErrors";
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    pub const NAMESPACE_NOT_FOUND: &str = "NamespaceNotFound";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const WRITE_FAILED: &str = "WriteFailed";
    pub const SERVICE_ACCOUNT_FAILED: &str = "ServiceAccountFailed";
}

/// What one reconcile found, for the status.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub targets: u32,
    pub synced: u32,
    pub failures: Vec<NamespaceFailure>,
    /// A CR-wide failure (token, spec): `(reason, message)`.
    pub fatal: Option<(&'static str, String)>,
    pub expires_at: Option<String>,
    pub last_refresh_time: Option<String>,
    pub next_refresh_time: Option<String>,
}

/// The Ready condition's (status, reason, message) for an outcome.
pub fn ready(outcome: &Outcome) -> (&'static str, &'static str, String) {
    if let Some((reason, message)) = &outcome.fatal {
        return ("False", reason, message.clone());
    }
    if outcome.failures.is_empty() {
        return (
            "True",
            reason::TOKEN_FETCHED,
            format!(
                "{} of {} namespaces synced",
                outcome.synced, outcome.targets
            ),
        );
    }
    let conflicts = outcome
        .failures
        .iter()
        .filter(|f| f.reason == reason::SECRET_CONFLICT)
        .count();
    let r = if conflicts == outcome.failures.len() {
        reason::SECRET_CONFLICT
    } else {
        reason::NAMESPACE_ERRORS
    };
    let first = &outcome.failures[0];
    (
        "False",
        r,
        format!(
            "{} of {} namespaces synced; {} failed, first {}: {}",
            outcome.synced,
            outcome.targets,
            outcome.failures.len(),
            first.namespace,
            first.message
        ),
    )
}

/// The new status; `lastTransitionTime` moves only when the condition's status does.
pub fn compute(
    prev: Option<&Status>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &str,
) -> Status {
    let (status, reason, message) = ready(outcome);
    let prev_ready = prev.and_then(|p| p.conditions.iter().find(|c| c.type_ == "Ready"));
    let last_transition_time = match prev_ready {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.to_string(),
    };
    let mut failures = outcome.failures.clone();
    failures.sort();
    let failed = failures.len() as u32;
    failures.truncate(MAX_REPORTED_FAILURES);
    Status {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: generation,
        }],
        expires_at: outcome
            .expires_at
            .clone()
            .or_else(|| prev.and_then(|p| p.expires_at.clone())),
        last_refresh_time: outcome
            .last_refresh_time
            .clone()
            .or_else(|| prev.and_then(|p| p.last_refresh_time.clone())),
        next_refresh_time: outcome.next_refresh_time.clone(),
        target_namespaces: outcome.targets,
        synced_namespaces: outcome.synced,
        failed_namespaces: failed,
        failures,
    }
}

/// The merge patch that sets `status` whole: absent optional fields become explicit
/// nulls so stale values are removed, lists are replaced.
pub fn patch_body(status: &Status) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        for key in [
            "observedGeneration",
            "expiresAt",
            "lastRefreshTime",
            "nextRefreshTime",
        ] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
        map.entry("failures").or_insert(serde_json::json!([]));
    }
    serde_json::json!({ "status": value })
}

/// An event worth emitting when Ready changes: (type, reason, message).
pub fn transition_event(
    prev: Option<&Status>,
    next: &Status,
) -> Option<(&'static str, String, String)> {
    let new = next.conditions.first()?;
    let old = prev.and_then(|p| p.conditions.iter().find(|c| c.type_ == "Ready"));
    if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
        return None;
    }
    let kind = if new.status == "True" {
        "Normal"
    } else {
        "Warning"
    };
    Some((kind, new.reason.clone(), new.message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(synced: u32) -> Outcome {
        Outcome {
            targets: synced,
            synced,
            ..Default::default()
        }
    }

    #[test]
    fn unchanged_outcome_gives_an_equal_status_so_nothing_is_written() {
        let a = compute(None, Some(1), &ok(3), "t1");
        let b = compute(Some(&a), Some(1), &ok(3), "t2");
        assert_eq!(a, b);
        assert!(transition_event(Some(&a), &b).is_none());
        assert_eq!(transition_event(None, &a).unwrap().1, "TokenFetched");
    }

    #[test]
    fn failure_flips_ready_and_emits_one_warning() {
        let a = compute(None, Some(1), &ok(3), "t1");
        let mut bad = ok(3);
        bad.fatal = Some((reason::AWS_ERROR, "throttled".into()));
        let b = compute(Some(&a), Some(1), &bad, "t2");
        assert_eq!(b.conditions[0].status, "False");
        assert_eq!(b.conditions[0].last_transition_time, "t2");
        assert_eq!(transition_event(Some(&a), &b).unwrap().0, "Warning");
        let c = compute(Some(&b), Some(1), &bad, "t3");
        assert!(
            transition_event(Some(&b), &c).is_none(),
            "aggregated: no repeat"
        );
    }

    #[test]
    fn failures_are_bounded_but_counted() {
        let mut o = ok(0);
        o.targets = 30;
        for i in 0..30 {
            o.failures.push(NamespaceFailure {
                namespace: format!("ns{i:02}"),
                reason: reason::WRITE_FAILED.into(),
                message: "x".into(),
            });
        }
        let s = compute(None, None, &o, "t");
        assert_eq!(s.failed_namespaces, 30);
        assert_eq!(s.failures.len(), MAX_REPORTED_FAILURES);
        assert_eq!(s.conditions[0].reason, reason::NAMESPACE_ERRORS);
    }

    #[test]
    fn patch_nulls_absent_fields() {
        let s = compute(None, None, &ok(1), "t");
        let p = patch_body(&s);
        assert!(p["status"]["expiresAt"].is_null());
        assert_eq!(p["status"]["failures"], serde_json::json!([]));
    }
}
