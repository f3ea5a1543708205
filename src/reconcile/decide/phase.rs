//! Which phase a CR is in for the cleanup finalizer of `deletionPolicy: Delete`, and the
//! patch that adds or removes our finalizer. As in kube-runtime's `finalizer`, the
//! reconciler is handed either an Apply or a Cleanup, never a flag to interpret.

use serde_json::{json, Value};

use super::spec::EcrPullSecret;
use crate::reconcile::vocab::FINALIZER;

/// What a reconcile of a CR must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The CR lives: bring its Secrets about.
    Apply,
    /// The CR is being deleted and our finalizer holds it: clean up, then release it.
    Cleanup,
    /// Being deleted without our finalizer: nothing is ours to do.
    Released,
}

/// The phase of `cr`.
pub(crate) fn phase(cr: &EcrPullSecret) -> Phase {
    match (cr.metadata.deletion_timestamp.is_some(), has_finalizer(cr)) {
        (false, _) => Phase::Apply,
        (true, true) => Phase::Cleanup,
        (true, false) => Phase::Released,
    }
}

pub(crate) fn has_finalizer(cr: &EcrPullSecret) -> bool {
    cr.metadata.finalizers.iter().any(|f| f == FINALIZER)
}

/// The JSON patch that adds (`want`) or removes our finalizer, guarded by
/// resourceVersion so another writer's finalizers are never lost; `None` when the CR is
/// already as wanted.
pub(crate) fn finalizer_patch(cr: &EcrPullSecret, want: bool) -> Option<Value> {
    if has_finalizer(cr) == want {
        return None;
    }
    let mut finalizers: Vec<&str> = cr
        .metadata
        .finalizers
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER)
        .collect();
    if want {
        finalizers.push(FINALIZER);
    }
    Some(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": cr.metadata.resource_version},
        {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases() {
        let mut cr = EcrPullSecret::default();
        assert_eq!(phase(&cr), Phase::Apply);
        cr.metadata.finalizers.push(FINALIZER.into());
        assert_eq!(phase(&cr), Phase::Apply);
        cr.metadata.deletion_timestamp = Some("2026-11-26T12:00:00Z".into());
        assert_eq!(phase(&cr), Phase::Cleanup);
        cr.metadata.finalizers.clear();
        assert_eq!(phase(&cr), Phase::Released);
    }
}
