//! The cleanup finalizer of `deletionPolicy: Delete`: which phase a CR is in, and adding
//! or removing our finalizer. As in kube-runtime's `finalizer`, the reconciler is handed
//! either an Apply or a Cleanup, never a flag to interpret.

use serde_json::json;

use super::decide::spec::EcrPullSecret;
use super::vocab::FINALIZER;
use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, Error, Patch};

/// What a reconcile of a CR must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The CR lives: bring its Secrets about.
    Apply,
    /// The CR is being deleted and our finalizer holds it: clean up, then release it.
    Cleanup,
    /// Being deleted without our finalizer: nothing is ours to do.
    Released,
}

/// The phase of `cr`.
pub fn phase(cr: &EcrPullSecret) -> Phase {
    match (cr.metadata.deletion_timestamp.is_some(), has_finalizer(cr)) {
        (false, _) => Phase::Apply,
        (true, true) => Phase::Cleanup,
        (true, false) => Phase::Released,
    }
}

pub fn has_finalizer(cr: &EcrPullSecret) -> bool {
    cr.metadata.finalizers.iter().any(|f| f == FINALIZER)
}

/// Adds (`want`) or removes our finalizer with a JSON patch guarded by resourceVersion, so
/// another writer's finalizers are never lost. Does nothing when already as wanted; else
/// the CR as the server answered.
pub async fn set(
    client: &Client,
    cr: &EcrPullSecret,
    want: bool,
) -> Result<Option<EcrPullSecret>, Error> {
    if has_finalizer(cr) == want {
        return Ok(None);
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
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": cr.metadata.resource_version},
        {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
    ]);
    let name = cr.metadata.name.as_deref().unwrap_or_default();
    client
        .patch::<EcrPullSecret>(&ECR_PULL_SECRETS.object(None, name), Patch::Json(&patch))
        .await
        .map(Some)
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
