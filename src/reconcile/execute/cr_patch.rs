//! The writes to an ECRPullSecret itself: the patch that adds or removes our cleanup
//! finalizer, and the status patch. Both are decided in `decide/` (`phase`, `status`);
//! here they are only sent, and the CR comes back as the server answered it.

use serde_json::Value;

use super::writes::retrying;
use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::k8s::{Client, Error, Patch};
use crate::reconcile::decide::spec::EcrPullSecret;

/// Sends the patches of CRs.
#[derive(Clone, Debug)]
pub(crate) struct CrPatcher {
    client: Client,
}

// === impl CrPatcher ===

impl CrPatcher {
    pub(crate) fn new(client: Client) -> Self {
        CrPatcher { client }
    }

    /// Sends `patch`, the JSON patch that adds or removes our finalizer on CR `name`
    /// (guarded by resourceVersion, so another writer's finalizers are never lost). Not
    /// retried here: a failure fails the reconcile, which the controller retries.
    pub(crate) async fn finalizer(
        &self,
        name: &str,
        patch: &Value,
    ) -> Result<EcrPullSecret, Error> {
        let path = ECR_PULL_SECRETS.object(None, name);
        self.client
            .patch::<EcrPullSecret, _>(&path, Patch::Json(patch))
            .await
    }

    /// Sends the merge patch `body` to CR `name`'s status subresource, retrying
    /// transient errors.
    pub(crate) async fn status(&self, name: &str, body: &Value) -> Result<EcrPullSecret, Error> {
        let path = ECR_PULL_SECRETS.object(None, name);
        retrying(|| {
            self.client
                .patch_status::<EcrPullSecret, _>(&path, Patch::Merge(body))
        })
        .await
    }
}
