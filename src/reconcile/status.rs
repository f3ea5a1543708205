//! The CR's status and events: computed from a reconcile's outcome, written only when
//! they change. Reasons are typed here and become strings only on the wire.

use std::fmt;

use super::spec::{Condition, NamespaceFailure, Status, MAX_REPORTED_FAILURES};

/// The longest message copied into a condition or failure: API servers and AWS answer
/// with messages of any length, and status is read by every `kubectl describe`.
pub const MAX_MESSAGE: usize = 512;

/// Condition and failure reasons, CamelCase as Kubernetes expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    TokenFetched,
    AwsError,
    Throttled,
    CredentialsMissing,
    /// The CR named a credentials Secret it may not use.
    CredentialsNotPermitted,
    NamespaceErrors,
    SecretConflict,
    NamespaceNotFound,
    InvalidSpec,
    WriteFailed,
    ServiceAccountFailed,
    /// A bug: the reconcile panicked; the operator went on with the other CRs.
    ReconcilePanicked,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::TokenFetched => "TokenFetched",
            Reason::AwsError => "AwsError",
            Reason::Throttled => "Throttled",
            Reason::CredentialsMissing => "CredentialsMissing",
            Reason::CredentialsNotPermitted => "CredentialsNotPermitted",
            Reason::NamespaceErrors => "NamespaceErrors",
            Reason::SecretConflict => "SecretConflict",
            Reason::NamespaceNotFound => "NamespaceNotFound",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::WriteFailed => "WriteFailed",
            Reason::ServiceAccountFailed => "ServiceAccountFailed",
            Reason::ReconcilePanicked => "ReconcilePanicked",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition's status.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
/// The condition type every CR carries.
pub const READY: &str = "Ready";

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One namespace that is not as it should be.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    pub namespace: String,
    pub reason: Reason,
    pub message: String,
}

/// What one reconcile found, for the status.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub targets: u32,
    pub synced: u32,
    pub failures: Vec<Failure>,
    /// A CR-wide failure (token, spec): `(reason, message)`.
    pub fatal: Option<(Reason, String)>,
    pub expires_at: Option<String>,
    pub last_refresh_time: Option<String>,
    pub next_refresh_time: Option<String>,
}

/// The Ready condition's (status, reason, message) for an outcome.
pub fn ready(outcome: &Outcome) -> (&'static str, Reason, String) {
    if let Some((reason, message)) = &outcome.fatal {
        return (FALSE, *reason, truncate(message));
    }
    let Some(first) = outcome.failures.iter().min() else {
        return (
            TRUE,
            Reason::TokenFetched,
            format!(
                "{} of {} namespaces synced",
                outcome.synced, outcome.targets
            ),
        );
    };
    let all_conflicts = outcome
        .failures
        .iter()
        .all(|f| f.reason == Reason::SecretConflict);
    let r = if all_conflicts {
        Reason::SecretConflict
    } else {
        Reason::NamespaceErrors
    };
    (
        FALSE,
        r,
        truncate(&format!(
            "{} of {} namespaces synced; {} failed, first {}: {}",
            outcome.synced,
            outcome.targets,
            outcome.failures.len(),
            first.namespace,
            first.message
        )),
    )
}

/// At most [`MAX_MESSAGE`] bytes, cut at a character boundary and marked as cut.
pub fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The new status; `lastTransitionTime` moves only when the condition's status does.
pub fn compute(
    prev: Option<&Status>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &str,
) -> Status {
    let (status, reason, message) = ready(outcome);
    let prev_ready = prev.and_then(ready_condition);
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
            type_: READY.into(),
            status: status.into(),
            reason: reason.as_str().into(),
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
        failures: failures
            .into_iter()
            .map(|f| NamespaceFailure {
                namespace: f.namespace,
                reason: f.reason.as_str().into(),
                message: truncate(&f.message),
            })
            .collect(),
    }
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: &Status) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == READY)
}

/// Whether a status says Ready=True.
pub fn is_ready(status: &Status) -> bool {
    ready_condition(status).is_some_and(|c| c.status == TRUE)
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
) -> Option<(EventType, String, String)> {
    let new = ready_condition(next)?;
    let old = prev.and_then(ready_condition);
    if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
        return None;
    }
    let kind = if new.status == TRUE {
        EventType::Normal
    } else {
        EventType::Warning
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
        bad.fatal = Some((Reason::AwsError, "throttled".into()));
        let b = compute(Some(&a), Some(1), &bad, "t2");
        assert_eq!(b.conditions[0].status, "False");
        assert_eq!(b.conditions[0].last_transition_time, "t2");
        assert_eq!(
            transition_event(Some(&a), &b).unwrap().0,
            EventType::Warning
        );
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
            o.failures.push(Failure {
                namespace: format!("ns{i:02}"),
                reason: Reason::WriteFailed,
                message: "x".into(),
            });
        }
        let s = compute(None, None, &o, "t");
        assert_eq!(s.failed_namespaces, 30);
        assert_eq!(s.failures.len(), MAX_REPORTED_FAILURES);
        assert_eq!(s.conditions[0].reason, "NamespaceErrors");
    }

    #[test]
    fn patch_nulls_absent_fields() {
        let s = compute(None, None, &ok(1), "t");
        let p = patch_body(&s);
        assert!(p["status"]["expiresAt"].is_null());
        assert_eq!(p["status"]["failures"], serde_json::json!([]));
    }

    #[test]
    fn long_messages_from_servers_are_cut_in_status() {
        let mut o = ok(1);
        o.failures.push(Failure {
            namespace: "a".into(),
            reason: Reason::WriteFailed,
            message: "é".repeat(10_000),
        });
        let s = compute(None, None, &o, "t");
        assert!(s.failures[0].message.len() <= MAX_MESSAGE);
        assert!(s.failures[0].message.ends_with('…'));
        assert!(s.conditions[0].message.len() <= MAX_MESSAGE);
        o.fatal = Some((Reason::AwsError, "x".repeat(100_000)));
        assert!(compute(None, None, &o, "t").conditions[0].message.len() <= MAX_MESSAGE);
    }
}
