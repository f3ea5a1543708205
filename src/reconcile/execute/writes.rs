//! Single-object writes through the Kubernetes client: Secrets by create or
//! precondition-guarded merge patch, deletes with uid and resourceVersion preconditions,
//! ServiceAccounts by JSON patch guarded by a `test` on resourceVersion (their
//! `imagePullSecrets` is an atomic list), with re-read and retry on conflict so concurrent
//! writers never lose an entry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::sa_locks::SaLocks;
use crate::backoff::{Backoff, TRANSIENT_RETRIES};
use crate::k8s::kind::{SECRETS, SERVICE_ACCOUNTS};
use crate::k8s::types::{ObjectMeta, Secret, SecretAnswer, ServiceAccount};
use crate::k8s::{Client, Error, Patch, Preconditions};
use crate::metrics::{Metrics, WritePhase};
use crate::reconcile::decide::content::{self, Content};
use crate::reconcile::decide::dockerconfig;
use crate::reconcile::decide::existing::{self, Existing};
use crate::reconcile::decide::plan::{change_for, SaEdit};
use crate::reconcile::decide::state::{ManagedSecret, SaView};
use crate::reconcile::vocab::{Owner, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

mod bodies;
mod merges;
mod sa_patch;

#[cfg(test)]
mod emulated_tests;
use bodies::SecretBodies;
pub(crate) use merges::MergeOutcome;
use sa_patch::SaPatch;

/// How often a ServiceAccount edit is retried after losing a race to another writer.
pub(crate) const SA_CONFLICT_RETRIES: usize = 5;

/// What a Secret write should hold.
#[derive(Clone)]
pub(crate) struct SecretContent {
    pub owner: Owner,
    /// The base64 `.dockerconfigjson` value.
    pub data: String,
    /// Its checksum (also among `annotations`).
    pub checksum: String,
    pub annotations: BTreeMap<String, String>,
    /// The registry hosts `data` covers: the only hosts an adopted Secret may hold.
    pub hosts: Vec<String>,
    /// The create and refresh bodies, serialised once for every namespace.
    bodies: SecretBodies,
}

impl SecretContent {
    /// The content of Secret `name` for `owner`.
    pub(crate) fn new(owner: &Owner, name: &str, content: &Content) -> SecretContent {
        let annotations = content::annotations(owner, content);
        SecretContent {
            owner: owner.clone(),
            bodies: SecretBodies::new(name, &managed_labels(), &annotations, &content.data),
            data: content.data.clone(),
            checksum: content.checksum.clone(),
            annotations,
            hosts: content.hosts.clone(),
        }
    }
}

impl std::fmt::Debug for SecretContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretContent")
            .field("owner", &self.owner)
            .field("annotations", &self.annotations)
            .finish_non_exhaustive()
    }
}

/// The result of trying to put our Secret into a namespace.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SecretOutcome {
    Written,
    /// A Secret of that name exists and is not ours (and not adoptable).
    Conflict,
}

/// Where successful writes go, ahead of the watch (read your own writes, see
/// `runtime::store`): the next plan starts from what we wrote, not from a cache that has
/// not caught up yet.
pub(crate) trait WriteThrough: Send + Sync + 'static {
    /// Our Secret `namespace/name` as the server answered a create or patch, projected
    /// (`None`: not one the cache keeps).
    fn secret_written(&self, namespace: &str, name: &str, projection: Option<ManagedSecret>);
    /// A Secret we deleted as it was at resourceVersion `version` (our precondition).
    fn secret_deleted(&self, namespace: &str, name: &str, version: &str);
    /// A ServiceAccount as the server answered a patch.
    fn service_account_written(&self, sa: &ServiceAccount);
    /// Our freshest view of a ServiceAccount: our last write of it, else the cache's.
    fn service_account(&self, namespace: &str, name: &str) -> Option<SaView>;
    /// A shared pull secret as the server answered our write (`secretPolicy: Merge`).
    fn shared_secret_written(&self, _secret: &Secret) {}
    /// A shared pull secret we deleted at resourceVersion `version`, or found gone
    /// (`version` empty).
    fn shared_secret_deleted(&self, _namespace: &str, _name: &str, _version: &str) {}
}

/// Keeps nothing: for writers without a cache (tests of single writes).
struct NoCache;

impl WriteThrough for NoCache {
    fn secret_written(&self, _: &str, _: &str, _: Option<ManagedSecret>) {}
    fn secret_deleted(&self, _: &str, _: &str, _: &str) {}
    fn service_account_written(&self, _: &ServiceAccount) {}
    fn service_account(&self, _: &str, _: &str) -> Option<SaView> {
        None
    }
}

/// Requests in flight at once through one writer, whatever the number of reconciles:
/// each is a connection to the API server with its buffers, and a busy server is better
/// served by a steady stream than by a burst.
pub(crate) const MAX_REQUESTS_IN_FLIGHT: usize = 16;

/// Writes through one client.
#[derive(Clone)]
pub(crate) struct Writer {
    client: Client,
    cache: Arc<dyn WriteThrough>,
    sa_locks: SaLocks,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Where writes are counted and timed.
    metrics: Metrics,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

// === impl Writer ===

impl Writer {
    pub(crate) fn new(client: Client) -> Self {
        Writer {
            client,
            cache: Arc::new(NoCache),
            sa_locks: SaLocks::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
            metrics: Metrics::default(),
        }
    }

    /// Counts and times writes in the operator's registry (a private one until given).
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// One request: within the in-flight bound, transient errors retried.
    async fn send<T, Fut>(&self, request: impl FnMut() -> Fut) -> Result<T, Error>
    where
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.in_flight.acquire().await.ok();
        retrying(request).await
    }

    /// A Secret create or refresh within the in-flight bound, its time recorded as
    /// [`WritePhase::Send`] (from the request out until the answer is read).
    async fn send_secret_write<Fut>(
        &self,
        request: impl FnMut() -> Fut,
    ) -> Result<bytes::Bytes, Error>
    where
        Fut: std::future::Future<Output = Result<bytes::Bytes, Error>>,
    {
        let _permit = self.in_flight.acquire().await.ok();
        let started = Instant::now();
        let answer = retrying(request).await;
        self.metrics
            .secret_write_phase(WritePhase::Send, started.elapsed());
        answer
    }

    /// Our Secret write's answer into the cache, ahead of the watch. Only what the cache
    /// keeps is read: the data value is borrowed and compared with what we sent.
    fn secret_answered(&self, answer: &[u8], content: &SecretContent) -> Result<(), Error> {
        let started = Instant::now();
        let secret: SecretAnswer =
            serde_json::from_slice(answer).map_err(|source| Error::Decode {
                what: "API answer",
                source,
            })?;
        let parsed = Instant::now();
        self.metrics
            .secret_write_phase(WritePhase::Parse, parsed - started);
        let meta = &secret.metadata;
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            let projection =
                ManagedSecret::project_written(&secret, (&content.data, &content.checksum));
            self.cache.secret_written(ns, name, projection);
        }
        self.metrics
            .secret_write_phase(WritePhase::Cache, parsed.elapsed());
        Ok(())
    }

    /// Successful writes go to `cache`, ahead of the watch.
    #[must_use]
    pub(crate) fn with_cache(mut self, cache: Arc<dyn WriteThrough>) -> Self {
        self.cache = cache;
        self
    }

    /// Creates the Secret; on AlreadyExists (a Secret our label-filtered cache cannot see)
    /// adopts it when allowed and it holds only this CR's registries, else reports a
    /// conflict.
    pub(crate) async fn create_secret(
        &self,
        namespace: &str,
        name: &str,
        content: &SecretContent,
        adopt: bool,
    ) -> Result<SecretOutcome, Error> {
        let started = Instant::now();
        let body = content.bodies.create(namespace);
        self.metrics
            .secret_write_phase(WritePhase::Build, started.elapsed());
        let collection = SECRETS.collection(Some(namespace));
        match self
            .send_secret_write(|| self.client.create_raw(&collection, body.clone()))
            .await
        {
            Ok(created) => {
                self.secret_answered(&created, content)?;
                self.metrics.secret_written("create");
                Ok(SecretOutcome::Written)
            }
            Err(e) if e.is_already_exists() => self.adopt(namespace, name, content, adopt).await,
            Err(e) => Err(e),
        }
    }

    /// A create met an existing Secret: it is read, and [`existing::decide`] says whether
    /// it is ours, adoptable, or foreign (left alone and reported).
    async fn adopt(
        &self,
        namespace: &str,
        name: &str,
        content: &SecretContent,
        adopt: bool,
    ) -> Result<SecretOutcome, Error> {
        let path = SECRETS.object(Some(namespace), name);
        let existing: Secret = self.send(|| self.client.get(&path)).await?;
        let rv = existing
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let wanted = existing::Wanted {
            owner_name: &content.owner.name,
            data: &content.data,
            annotations: &content.annotations,
            hosts: &content.hosts,
            adopt,
        };
        match existing::decide(&existing, &wanted) {
            Existing::Conflict => Ok(SecretOutcome::Conflict),
            Existing::Current => Ok(SecretOutcome::Written),
            Existing::Stale => {
                self.update_secret(namespace, name, &rv, content).await?;
                Ok(SecretOutcome::Written)
            }
            Existing::Adopt => {
                tracing::info!(namespace, name, "adopting an unmanaged ECR pull secret");
                self.update_secret(namespace, name, &rv, content).await?;
                Ok(SecretOutcome::Written)
            }
        }
    }

    /// Refreshes our Secret from the version the cache showed. A 409 means the cache lagged
    /// behind a newer write (usually our own, whose watch event is still on its way): the
    /// current object is read and decided on again, so that race is no failure. Gone in
    /// the meantime: created again.
    pub(crate) async fn refresh_secret(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
        content: &SecretContent,
    ) -> Result<SecretOutcome, Error> {
        match self
            .update_secret(namespace, name, resource_version, content)
            .await
        {
            Ok(()) => Ok(SecretOutcome::Written),
            Err(e) if e.is_conflict() => self.adopt(namespace, name, content, false).await,
            Err(e) if e.is_not_found() => self.create_secret(namespace, name, content, false).await,
            Err(e) => Err(e),
        }
    }

    /// Rewrites our Secret's data and annotations; `resource_version` is a precondition
    /// (409 if someone changed it since we looked). Other labels, annotations and data
    /// keys are kept.
    pub(crate) async fn update_secret(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
        content: &SecretContent,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let body = content.bodies.patch(resource_version);
        self.metrics
            .secret_write_phase(WritePhase::Build, started.elapsed());
        let path = SECRETS.object(Some(namespace), name);
        let written = self
            .send_secret_write(|| self.client.merge_patch_raw(&path, body.clone()))
            .await?;
        self.secret_answered(&written, content)?;
        self.metrics.secret_written("update");
        Ok(())
    }

    /// Deletes our Secret as the cache showed it; already gone is fine. A Secret replaced
    /// or changed since (409 on the preconditions) is left for the next reconcile to judge.
    pub(crate) async fn delete_secret(&self, secret: &ManagedSecret) -> Result<(), Error> {
        let preconditions = Preconditions {
            uid: Some(secret.uid.to_string()).filter(|u| !u.is_empty()),
            resource_version: Some(secret.resource_version.to_string()).filter(|v| !v.is_empty()),
        };
        let path = SECRETS.object(Some(&secret.namespace), &secret.name);
        match self
            .send(|| self.client.delete_with(&path, Some(&preconditions)))
            .await
        {
            Ok(()) => self.metrics.secret_written("delete"),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.cache
            .secret_deleted(&secret.namespace, &secret.name, &secret.resource_version);
        Ok(())
    }

    /// Adds or removes our entry on a ServiceAccount. The patch tests resourceVersion, so
    /// a concurrent writer makes it fail instead of being overwritten; we then re-read
    /// the ServiceAccount and decide again.
    pub(crate) async fn edit_service_account(&self, edit: &SaEdit) -> Result<(), Error> {
        let path = SERVICE_ACCOUNTS.object(Some(&edit.sa.namespace), &edit.sa.name);
        // One edit of a ServiceAccount at a time in this process, each starting from the
        // freshest view: the previous edit's answer, ahead of the watch.
        let lock = self.sa_locks.lock_for(&edit.sa.namespace, &edit.sa.name);
        let _serialized = lock.lock().await;
        let mut edit = edit.clone();
        if let Some(freshest) = self
            .cache
            .service_account(&edit.sa.namespace, &edit.sa.name)
        {
            edit.sa = Arc::new(freshest);
        }
        let mut attempt = 0;
        loop {
            let Some(change) = change_for(&edit) else {
                return Ok(());
            };
            let patch = SaPatch::new(&edit.sa, &change);
            match self
                .send(|| {
                    self.client
                        .patch::<ServiceAccount, _>(&path, Patch::Json(&patch))
                })
                .await
            {
                Ok(written) => {
                    self.cache.service_account_written(&written);
                    self.metrics
                        .service_account_written(if edit.add { "add" } else { "remove" });
                    return Ok(());
                }
                Err(e) if is_lost_race(&e) && attempt < SA_CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(namespace = %edit.sa.namespace, sa = %edit.sa.name, attempt,
                        "ServiceAccount changed under us; re-reading");
                    let fresh: ServiceAccount = self.send(|| self.client.get(&path)).await?;
                    match SaView::project(&fresh) {
                        Some(view) => edit.sa = Arc::new(view),
                        None => return Ok(()),
                    }
                }
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs one request, retrying a transient error (a 500, a reset connection, a timeout;
/// 429 and 503 the client already rides out with Retry-After) a few times before it
/// counts: one bad answer of a busy server must not fail a namespace. Every write here
/// is guarded or idempotent, so a retry of a request that did land is answered by a
/// conflict or "already so", which the callers handle.
pub(crate) async fn retrying<T, Fut>(mut request: impl FnMut() -> Fut) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut backoff = Backoff::for_transient_errors();
    crate::backoff::retry(
        TRANSIENT_RETRIES,
        |_| backoff.next_delay(),
        Error::is_transient,
        &mut request,
    )
    .await
}

/// A failed `test` op answers 422 on the real server, a stale resourceVersion 409.
fn is_lost_race(e: &Error) -> bool {
    matches!(e.code(), Some(409) | Some(422))
}

fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())])
}

/// A `kubernetes.io/dockerconfigjson` Secret labelled as ours, as we create one.
pub(crate) fn managed_pull_secret(
    namespace: &str,
    name: &str,
    annotations: BTreeMap<String, String>,
    data: String,
) -> Secret {
    Secret {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: managed_labels(),
            annotations,
            ..Default::default()
        },
        type_: Some(dockerconfig::SECRET_TYPE.into()),
        data: BTreeMap::from([(dockerconfig::DATA_KEY.to_string(), data)]),
        immutable: None,
    }
}
