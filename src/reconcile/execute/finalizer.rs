//! Adding or removing our cleanup finalizer on a CR: the patch is decided in
//! `decide::phase`, sent here.

use serde_json::Value;

use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, Error, Patch};
use crate::reconcile::decide::spec::EcrPullSecret;

/// Sends `patch`, the JSON patch that adds or removes our finalizer on CR `name` (guarded
/// by resourceVersion, so another writer's finalizers are never lost); the CR as the
/// server answered.
pub(crate) async fn send(
    client: &Client,
    name: &str,
    patch: &Value,
) -> Result<EcrPullSecret, Error> {
    client
        .patch::<EcrPullSecret>(&ECR_PULL_SECRETS.object(None, name), Patch::Json(patch))
        .await
}
