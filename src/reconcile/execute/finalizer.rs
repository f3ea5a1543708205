//! Adding or removing our cleanup finalizer on a CR: the patch is decided in
//! `decide::phase`, sent here.

use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, Error, Patch};
use crate::reconcile::decide::phase::finalizer_patch;
use crate::reconcile::decide::spec::EcrPullSecret;

/// Adds (`want`) or removes our finalizer with a JSON patch guarded by resourceVersion, so
/// another writer's finalizers are never lost. Does nothing when already as wanted; else
/// the CR as the server answered.
pub(crate) async fn set(
    client: &Client,
    cr: &EcrPullSecret,
    want: bool,
) -> Result<Option<EcrPullSecret>, Error> {
    let Some(patch) = finalizer_patch(cr, want) else {
        return Ok(None);
    };
    let name = cr.metadata.name.as_deref().unwrap_or_default();
    client
        .patch::<EcrPullSecret>(&ECR_PULL_SECRETS.object(None, name), Patch::Json(&patch))
        .await
        .map(Some)
}
