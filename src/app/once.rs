//! `--once`: reconcile every CR one time and say how many failed, for CronJobs and CI.

use std::time::Duration;

use crate::k8s::kind::ECR_PULL_SECRETS;
use crate::reconcile::decide::spec::EcrPullSecret;
use crate::reconcile::decide::status;

use super::controller::timed_reconcile;
use super::{Running, StartError};

// === impl Running ===

impl Running {
    /// Reconciles every CR once; returns (CRs, how many failed or are not Ready).
    pub async fn run_once(self, sync_timeout: Duration) -> Result<(usize, usize), StartError> {
        if tokio::time::timeout(sync_timeout, self.caches.synced())
            .await
            .is_err()
        {
            let _ = self.shutdown_tx.send(true);
            return Err(StartError::CachesNotSynced {
                within: sync_timeout,
            });
        }
        let names = self.caches.cr_names();
        let mut failed = 0;
        let mut reconciled = Vec::new();
        for name in &names {
            match timed_reconcile(&self.reconciler, name).await {
                Ok(_) => reconciled.push(name),
                Err(e) => {
                    failed += 1;
                    tracing::error!(cr = %name, error = %e, "reconcile failed");
                }
            }
        }
        // Ready=False without an error (a conflict, a missing namespace) fails a one-shot
        // run too: read back the status the reconcile wrote.
        for name in reconciled {
            let ready = match self
                .client
                .get::<EcrPullSecret>(&ECR_PULL_SECRETS.object(None, name))
                .await
            {
                Ok(cr) => cr.status.as_ref().is_some_and(status::is_ready),
                Err(_) => false,
            };
            if ready {
                tracing::info!(cr = %name, "reconciled and Ready");
            } else {
                failed += 1;
                tracing::error!(cr = %name, "not Ready after reconcile (see its status)");
            }
        }
        let _ = self.shutdown_tx.send(true);
        Ok((names.len(), failed))
    }
}
