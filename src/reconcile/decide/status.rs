//! The CR's status and events: computed from a reconcile's outcome, written only when
//! they change. Reasons are typed here and become strings only on the wire.

use super::spec::{
    Condition, CredentialSourceStatus, EcrPullSecretStatus, NamespaceFailure, RegistryCheckStatus,
    MAX_REPORTED_FAILURES,
};
use super::verdict::{HostCheck, Verdict};
use crate::reconcile::vocab::{format_time, Reason};

/// The longest message copied into a condition or failure: API servers and AWS answer
/// with messages of any length, and status is read by every `kubectl describe`.
pub(crate) const MAX_MESSAGE: usize = 512;

/// A condition's status.
pub(crate) const TRUE: &str = "True";
pub(crate) const FALSE: &str = "False";
pub(crate) const UNKNOWN: &str = "Unknown";
/// The condition type every CR carries.
pub(crate) const READY: &str = "Ready";
/// Whether the registries accepted the token the Secrets hold (`GET /v2/`). Apart from
/// Ready: a Secret is written whatever the registry says, since ECR issued the token.
pub(crate) const REGISTRY_VERIFIED: &str = "RegistryVerified";
/// RegistryVerified's reason when no check is made (`spec.verify: false`, or the
/// operator's `--verify-registries=false`).
pub(crate) const VERIFY_DISABLED: &str = "Disabled";
/// RegistryVerified's reason while the CR may not use its credentials or role.
pub(crate) const VERIFY_WITHHELD: &str = "NotPermitted";

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One namespace that is not as it should be.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Failure {
    pub namespace: String,
    pub reason: Reason,
    pub message: String,
}

/// What one reconcile found, for the status.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    pub targets: u32,
    pub synced: u32,
    pub failures: Vec<Failure>,
    /// A CR-wide failure (token, spec): `(reason, message)`.
    pub fatal: Option<(Reason, String)>,
    pub expires_at: Option<String>,
    pub last_refresh_time: Option<String>,
    pub next_refresh_time: Option<String>,
    /// The credentials each host's token came from, when this reconcile fetched tokens;
    /// `None` keeps the last reported ones (cleared when the identity is withheld).
    pub credential_sources: Option<Vec<CredentialSourceStatus>>,
    /// This reconcile's registry checks; `None` keeps the last reported ones (no token
    /// was at hand to check).
    pub verification: Option<Verification>,
}

/// What the registries said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verification {
    Disabled,
    /// The CR may not use its credentials or role: nothing is checked for it, and what
    /// an earlier check said is withdrawn (a CR must learn nothing through a grant it
    /// lost).
    Withheld,
    /// One per host, sorted by host.
    Checked(Vec<HostCheck>),
}

/// The RegistryVerified condition's (status, reason, message).
fn registry_verified(v: &Verification) -> (&'static str, &'static str, String) {
    let checks = match v {
        Verification::Disabled => {
            return (
                UNKNOWN,
                VERIFY_DISABLED,
                "registry verification is turned off".into(),
            )
        }
        Verification::Withheld => {
            return (
                UNKNOWN,
                VERIFY_WITHHELD,
                "no registry is checked with credentials this ECRPullSecret may not use".into(),
            )
        }
        Verification::Checked(checks) => checks,
    };
    let failed: Vec<&HostCheck> = checks
        .iter()
        .filter(|c| c.verdict != Verdict::Verified)
        .collect();
    match failed.iter().min_by_key(|c| c.verdict) {
        None => (
            TRUE,
            Verdict::Verified.as_str(),
            format!(
                "{} of {} registries accepted the token",
                checks.len(),
                checks.len()
            ),
        ),
        Some(first) => (
            FALSE,
            first.verdict.as_str(),
            truncate(&format!(
                "{} of {} registries refused or did not answer; {}: {}",
                failed.len(),
                checks.len(),
                first.host,
                first.message
            )),
        ),
    }
}

/// A condition that keeps its `lastTransitionTime` while its status stays.
fn condition(
    prev: Option<&EcrPullSecretStatus>,
    type_: &str,
    (status, reason, message): (&str, &str, String),
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let last_transition_time = match prev.and_then(|p| find_condition(p, type_)) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.to_string(),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The Ready condition's (status, reason, message) for an outcome.
pub(crate) fn ready(outcome: &Outcome) -> (&'static str, Reason, String) {
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
pub(crate) fn truncate(s: &str) -> String {
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
pub(crate) fn compute(
    prev: Option<&EcrPullSecretStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &str,
) -> EcrPullSecretStatus {
    let (status, reason, message) = ready(outcome);
    let mut conditions = vec![condition(
        prev,
        READY,
        (status, reason.as_str(), message),
        generation,
        now,
    )];
    let registries = match &outcome.verification {
        Some(v) => {
            conditions.push(condition(
                prev,
                REGISTRY_VERIFIED,
                registry_verified(v),
                generation,
                now,
            ));
            registry_statuses(v)
        }
        None => {
            // No check this time: the last one stands, as it was.
            conditions.extend(
                prev.and_then(|p| find_condition(p, REGISTRY_VERIFIED))
                    .cloned(),
            );
            prev.map(|p| p.registries.clone()).unwrap_or_default()
        }
    };
    let credential_sources = match (&outcome.credential_sources, &outcome.verification) {
        (Some(sources), _) => sources.clone(),
        (None, Some(Verification::Withheld)) => Vec::new(),
        (None, _) => prev
            .map(|p| p.credential_sources.clone())
            .unwrap_or_default(),
    };
    let mut failures = outcome.failures.clone();
    failures.sort();
    let failed = failures.len() as u32;
    failures.truncate(MAX_REPORTED_FAILURES);
    EcrPullSecretStatus {
        observed_generation: generation,
        conditions,
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
        registries,
        credential_sources,
    }
}

/// The per-host list of status; hosts come from a validated spec, so it is short.
/// What one reconcile reports, decided in one place: the next status, what the CR's
/// metrics read from it, and, when it changed, the patch that writes it and the events
/// its transitions raise (sent only once the patch is written).
#[derive(Debug)]
pub(crate) struct Report {
    pub status: EcrPullSecretStatus,
    pub ready: bool,
    pub verified: bool,
    /// `None` when the status is unchanged: nothing to write, nothing to announce.
    pub change: Option<(serde_json::Value, Vec<TransitionEvent>)>,
}

/// An event a condition's transition raises: its type, reason and message.
pub(crate) type TransitionEvent = (EventType, String, String);

/// The [`Report`] of an `outcome` against the status the CR carries now.
pub(crate) fn report(
    prev: Option<&EcrPullSecretStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &str,
) -> Report {
    let status = compute(prev, generation, outcome, now);
    let change =
        (prev != Some(&status)).then(|| (patch_body(&status), transition_events(prev, &status)));
    Report {
        ready: is_ready(&status),
        verified: is_verified(&status),
        status,
        change,
    }
}

fn registry_statuses(v: &Verification) -> Vec<RegistryCheckStatus> {
    let Verification::Checked(checks) = v else {
        return Vec::new();
    };
    checks
        .iter()
        .map(|c| RegistryCheckStatus {
            host: c.host.clone(),
            result: c.verdict.as_str().into(),
            message: truncate(&c.message),
            checked_at: format_time(c.checked_at),
        })
        .collect()
}

/// The condition of type `type_`, if any.
pub(crate) fn find_condition<'a>(
    status: &'a EcrPullSecretStatus,
    type_: &str,
) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The Ready condition of a status, if any.
pub(crate) fn ready_condition(status: &EcrPullSecretStatus) -> Option<&Condition> {
    find_condition(status, READY)
}

/// Whether a status says RegistryVerified=True.
pub(crate) fn is_verified(status: &EcrPullSecretStatus) -> bool {
    find_condition(status, REGISTRY_VERIFIED).is_some_and(|c| c.status == TRUE)
}

/// Whether a status says Ready=True.
pub(crate) fn is_ready(status: &EcrPullSecretStatus) -> bool {
    ready_condition(status).is_some_and(|c| c.status == TRUE)
}

/// The merge patch that sets `status` whole: absent optional fields become explicit
/// nulls so stale values are removed, lists are replaced.
pub(crate) fn patch_body(status: &EcrPullSecretStatus) -> serde_json::Value {
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
        map.entry("registries").or_insert(serde_json::json!([]));
        map.entry("credentialSources")
            .or_insert(serde_json::json!([]));
    }
    serde_json::json!({ "status": value })
}

/// Events for every condition that changed: Ready, then RegistryVerified (a check turned
/// off is not news).
pub(crate) fn transition_events(
    prev: Option<&EcrPullSecretStatus>,
    next: &EcrPullSecretStatus,
) -> Vec<(EventType, String, String)> {
    let verified = changed(prev, next, REGISTRY_VERIFIED).filter(|(_, r, _)| r != VERIFY_DISABLED);
    changed(prev, next, READY)
        .into_iter()
        .chain(verified)
        .collect()
}

/// (type, reason, message) when condition `type_` changed status or reason.
fn changed(
    prev: Option<&EcrPullSecretStatus>,
    next: &EcrPullSecretStatus,
    type_: &str,
) -> Option<(EventType, String, String)> {
    let new = find_condition(next, type_)?;
    let old = prev.and_then(|p| find_condition(p, type_));
    if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
        return None;
    }
    let kind = if new.status == FALSE {
        EventType::Warning
    } else {
        EventType::Normal
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
        assert!(transition_events(Some(&a), &b).is_empty());
        assert_eq!(transition_events(None, &a)[0].1, "TokenFetched");
    }

    #[test]
    fn failure_flips_ready_and_emits_one_warning() {
        let a = compute(None, Some(1), &ok(3), "t1");
        let mut bad = ok(3);
        bad.fatal = Some((Reason::AwsError, "throttled".into()));
        let b = compute(Some(&a), Some(1), &bad, "t2");
        assert_eq!(b.conditions[0].status, "False");
        assert_eq!(b.conditions[0].last_transition_time, "t2");
        assert_eq!(transition_events(Some(&a), &b)[0].0, EventType::Warning);
        let c = compute(Some(&b), Some(1), &bad, "t3");
        assert!(
            transition_events(Some(&b), &c).is_empty(),
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

    fn check(host: &str, verdict: Verdict) -> HostCheck {
        HostCheck {
            host: host.into(),
            verdict,
            message: format!("{host} said so"),
            checked_at: time::OffsetDateTime::UNIX_EPOCH,
            retry_at: None,
        }
    }

    #[test]
    fn registry_verified_is_its_own_condition_and_stays_without_a_check() {
        let mut o = ok(2);
        o.verification = Some(Verification::Checked(vec![
            check("a", Verdict::Verified),
            check("b", Verdict::Unreachable),
            check("c", Verdict::Unauthorized),
        ]));
        let a = compute(None, Some(1), &o, "t1");
        assert!(is_ready(&a), "Ready keeps its meaning");
        let v = find_condition(&a, REGISTRY_VERIFIED).unwrap();
        assert_eq!(
            (v.status.as_str(), v.reason.as_str()),
            (FALSE, "Unauthorized")
        );
        assert!(v.message.starts_with("2 of 3 registries"), "{}", v.message);
        assert_eq!(a.registries.len(), 3);
        assert_eq!(a.registries[1].result, "Unreachable");
        let events = transition_events(None, &a);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].0, EventType::Warning);

        // A reconcile that checked nothing keeps what was reported, so nothing is written.
        let b = compute(Some(&a), Some(1), &ok(2), "t2");
        assert_eq!(a, b);
        assert!(transition_events(Some(&a), &b).is_empty());

        o.verification = Some(Verification::Checked(vec![check("a", Verdict::Verified)]));
        let c = compute(Some(&b), Some(1), &o, "t3");
        assert!(is_verified(&c));
        assert_eq!(transition_events(Some(&b), &c)[0].1, "Verified");
        o.verification = Some(Verification::Disabled);
        let d = compute(Some(&c), Some(1), &o, "t4");
        let v = find_condition(&d, REGISTRY_VERIFIED).unwrap();
        assert_eq!(
            (v.status.as_str(), v.reason.as_str()),
            (UNKNOWN, VERIFY_DISABLED)
        );
        assert!(d.registries.is_empty());
        assert!(
            transition_events(Some(&c), &d).is_empty(),
            "turning it off is not news"
        );
        assert_eq!(
            patch_body(&d)["status"]["registries"],
            serde_json::json!([])
        );
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
