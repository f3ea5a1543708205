//! Writes into shared pull secrets (`secretPolicy: Merge`). Every write starts from the
//! Secret as the API server has it now (the cache keeps no credentials, and the other
//! entries must come back byte for byte) and is guarded by that resourceVersion: an
//! owner editing the Secret at the same moment makes our patch fail, never lose their
//! edit; we then read again and redo ours.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Writer, SA_CONFLICT_RETRIES};
use crate::k8s::kind::SECRETS;
use crate::k8s::types::Secret;
use crate::k8s::{Error, Patch, Preconditions};
use crate::reconcile::decide::dockerconfig;
use crate::reconcile::decide::shared::{self, MergeEdit};
use crate::reconcile::vocab::{MERGED_HOSTS_ANNOTATION, OWNER_ANNOTATION, OWNER_UID_ANNOTATION};

/// What a merge write came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MergeOutcome {
    /// Our entries are as asked; `conflicts` lists asked-for hosts left alone.
    Merged { conflicts: Vec<String> },
    /// The Secret takes no entries of ours (another type, immutable, unreadable): why.
    Refused(String),
}

// === impl Writer ===

impl Writer {
    /// Sets and removes CR entries in the shared Secret `namespace/name` as `edit` says,
    /// creating the Secret (as the operator's, labelled) when it is absent and there is
    /// something to set, and deleting it when the operator created it and nothing is
    /// left in it.
    pub(crate) async fn merge_secret(
        &self,
        namespace: &str,
        name: &str,
        edit: &MergeEdit,
    ) -> Result<MergeOutcome, Error> {
        let path = SECRETS.object(Some(namespace), name);
        let mut attempt = 0;
        loop {
            let current: Secret = match self.send(|| self.client.get(&path)).await {
                Ok(s) => s,
                Err(e) if e.is_not_found() => {
                    if edit.set.is_empty() {
                        self.cache.shared_secret_deleted(namespace, name, "");
                        return Ok(MergeOutcome::Merged {
                            conflicts: Vec::new(),
                        });
                    }
                    match self.create_shared(namespace, name, edit).await {
                        Err(e) if e.is_already_exists() && attempt < SA_CONFLICT_RETRIES => {
                            attempt += 1;
                            continue;
                        }
                        other => return other,
                    }
                }
                Err(e) => return Err(e),
            };
            let merged = match shared::edit(&current, edit) {
                Ok(m) => m,
                Err(refusal) => return Ok(MergeOutcome::Refused(refusal.to_string())),
            };
            let done = MergeOutcome::Merged {
                conflicts: merged.conflicts.clone(),
            };
            if !merged.changed {
                self.cache.shared_secret_written(&current);
                return Ok(done);
            }
            let result = if merged.empty && created_by(&current, edit) {
                self.delete_shared(&current, &path).await
            } else {
                let patch = json!({
                    "metadata": {
                        "resourceVersion": current.metadata.resource_version,
                        "annotations": { MERGED_HOSTS_ANNOTATION: merged.records },
                    },
                    "data": { dockerconfig::DATA_KEY: merged.data },
                });
                self.send(|| self.client.patch::<Secret, _>(&path, Patch::Merge(&patch)))
                    .await
                    .map(|written| {
                        self.cache.shared_secret_written(&written);
                        self.metrics.secret_written("merge");
                    })
            };
            match result {
                Ok(()) => return Ok(done),
                // Someone wrote it since we read it (or it went): read again, redo ours.
                Err(e)
                    if (e.is_conflict() || e.is_not_found()) && attempt < SA_CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(
                        namespace,
                        name,
                        attempt,
                        "shared Secret changed under us; re-reading"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The shared Secret did not exist: create it as the operator's own (labelled, so
    /// the admission policy lets us create and later delete it).
    async fn create_shared(
        &self,
        namespace: &str,
        name: &str,
        edit: &MergeEdit,
    ) -> Result<MergeOutcome, Error> {
        let empty = Secret {
            type_: Some(dockerconfig::SECRET_TYPE.into()),
            ..Default::default()
        };
        let merged = shared::edit(&empty, edit).map_err(|r| Error::Request {
            message: format!("building a shared Secret: {r}"),
        })?;
        let mut annotations = BTreeMap::from([
            (OWNER_ANNOTATION.to_string(), edit.owner.name.clone()),
            (OWNER_UID_ANNOTATION.to_string(), edit.owner.uid.clone()),
        ]);
        if let Some(records) = &merged.records {
            annotations.insert(MERGED_HOSTS_ANNOTATION.to_string(), records.clone());
        }
        let body = super::managed_pull_secret(namespace, name, annotations, merged.data);
        let collection = SECRETS.collection(Some(namespace));
        let created: Secret = self
            .send(|| self.client.create::<_, Secret>(&collection, &body))
            .await?;
        self.cache.shared_secret_written(&created);
        self.metrics.secret_written("create");
        Ok(MergeOutcome::Merged {
            conflicts: merged.conflicts,
        })
    }

    /// Deletes a shared Secret the operator created once nothing is left in it, as read
    /// (uid and resourceVersion preconditions: an entry added since keeps it).
    async fn delete_shared(&self, current: &Secret, path: &str) -> Result<(), Error> {
        let meta = &current.metadata;
        let preconditions = Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        };
        self.send(|| self.client.delete_with(path, Some(&preconditions)))
            .await?;
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            let version = meta.resource_version.as_deref().unwrap_or_default();
            self.cache.shared_secret_deleted(ns, name, version);
        }
        self.metrics.secret_written("delete");
        Ok(())
    }
}

/// Whether the operator created `secret` for the CR of `edit`.
fn created_by(secret: &Secret, edit: &MergeEdit) -> bool {
    let meta = &secret.metadata;
    meta.labels.get(super::MANAGED_BY_LABEL).map(String::as_str) == Some(super::MANAGED_BY_VALUE)
        && meta.annotations.get(OWNER_ANNOTATION) == Some(&edit.owner.name)
}
