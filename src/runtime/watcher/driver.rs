//! The driver: performs the I/O a [`WatchState`] asks for, feeds the answers to [`step`],
//! applies the outputs to the store and the caller's callback, and backs off after
//! failures. Backoff wraps the machine from outside.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::machine::{step, Event, Input, Io, Output, WatchState};
use super::{IDLE_SLACK, PAGE_SIZE, WATCH_TIMEOUT_JITTER, WATCH_TIMEOUT_SECS};
use crate::backoff::{ResetAfterHealthy, SplitMix64};
use crate::k8s::types::{ObjectList, Resource, WatchEvent};
use crate::k8s::{self, Client, ListParams, WatchParams, WatchStream};
use crate::runtime::metrics::MetricsHandle;
use crate::runtime::shutdown_requested;
use crate::runtime::store::{Change, ObjectKey, Store};

// === the source: list and watch ===

/// One page of the list to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// At most this many objects per page.
    pub limit: u32,
    /// Where the previous page ended; `None` for the first page.
    pub continue_token: Option<String>,
}

/// Where to start a watch and when the server should end it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WatchRequest {
    /// Events after this version are sent; never empty (empty means "from now", which
    /// skips events).
    pub resource_version: String,
    /// The server ends the watch cleanly after this long.
    pub timeout_seconds: u32,
}

/// A collection that can be listed and watched (the collection path and selectors are
/// bound in the implementor). Implemented for [`KubeListWatch`]; tests use a fake.
pub(crate) trait ListWatch<T>: Send + Sync + 'static {
    /// Why a list or a watch failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The events of one open watch.
    type Stream: EventStream<T, Error = Self::Error> + Send + 'static;

    /// One page of the collection, with the list's resourceVersion on every page.
    fn list(
        &self,
        page: &PageRequest,
    ) -> impl Future<Output = Result<ObjectList<T>, Self::Error>> + Send;

    /// Bookmarks must be requested.
    fn watch(
        &self,
        req: &WatchRequest,
    ) -> impl Future<Output = Result<Self::Stream, Self::Error>> + Send;

    /// Whether the error is 410 Gone/Expired (resourceVersion or continue token too old).
    fn is_gone(error: &Self::Error) -> bool;
}

/// The events of one watch request.
pub(crate) trait EventStream<T> {
    /// Why the stream failed mid-way.
    type Error;

    /// The next event; `None` when the server ended the stream cleanly.
    fn next_event(
        &mut self,
    ) -> impl Future<Output = Option<Result<WatchEvent<T>, Self::Error>>> + Send;
}

/// A collection of the Kubernetes API, listed and watched through [`Client`].
#[derive(Clone, Debug)]
pub(crate) struct KubeListWatch {
    /// The API server connection.
    pub client: Client,
    /// E.g. `/api/v1/secrets`, from [`crate::k8s::kind::Kind::collection`].
    pub collection: String,
    /// Only objects with these labels (`labelSelector`), for list and watch alike.
    pub label_selector: Option<String>,
    /// Only objects with these fields (`fieldSelector`), for list and watch alike.
    pub field_selector: Option<String>,
}

// === impl KubeListWatch ===

impl<T: DeserializeOwned + Send + 'static> ListWatch<T> for KubeListWatch {
    type Error = k8s::Error;
    type Stream = WatchStream<T>;

    async fn list(&self, page: &PageRequest) -> Result<ObjectList<T>, k8s::Error> {
        let params = ListParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            limit: Some(page.limit),
            continue_token: page.continue_token.clone(),
        };
        self.client.list(&self.collection, &params).await
    }

    async fn watch(&self, req: &WatchRequest) -> Result<WatchStream<T>, k8s::Error> {
        let params = WatchParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            resource_version: req.resource_version.clone(),
            timeout_seconds: req.timeout_seconds,
            bookmarks: true,
        };
        self.client.watch(&self.collection, &params).await
    }

    fn is_gone(error: &k8s::Error) -> bool {
        error.is_gone()
    }
}

// === impl EventStream for WatchStream ===

impl<T: DeserializeOwned + Send> EventStream<T> for WatchStream<T> {
    type Error = k8s::Error;

    async fn next_event(&mut self) -> Option<Result<WatchEvent<T>, k8s::Error>> {
        self.next().await
    }
}

// === the driver ===

/// Settings of one reflector.
#[derive(Clone, Debug)]
pub(crate) struct WatcherConfig {
    /// Names the watched collection in logs and metrics.
    pub name: String,
    /// Objects per page of the initial list and every relist.
    pub page_size: u32,
    /// The server-side watch timeout before jitter, in seconds.
    pub watch_timeout_secs: u32,
    /// How much longer than the watch timeout a silent stream is given.
    pub idle_slack: Duration,
    /// The wait after each failure.
    pub backoff: ResetAfterHealthy,
    /// Counters the reflector updates; clone the `Arc` first to read them.
    pub stats: Arc<WatcherStats>,
    /// Where the reflector reports the same lists, events and failures.
    pub metrics: MetricsHandle,
}

/// What a reflector has been through, for metrics and debugging.
#[derive(Debug, Default)]
pub(crate) struct WatcherStats {
    lists: AtomicU64,
    events: AtomicU64,
    failures: AtomicU64,
}

// === impl WatcherStats ===

impl WatcherStats {
    /// Full lists completed (the first one and every relist).
    #[cfg(test)]
    pub(crate) fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// Watch events applied (bookmarks excluded).
    #[cfg(test)]
    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Failures that were backed off (410s included).
    #[cfg(test)]
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

// === impl WatcherConfig ===

impl WatcherConfig {
    /// The defaults above, with 0.8 s..30 s backoff reset after 2 minutes of health.
    #[must_use]
    pub(crate) fn new(name: impl Into<String>) -> WatcherConfig {
        WatcherConfig {
            name: name.into(),
            page_size: PAGE_SIZE,
            watch_timeout_secs: WATCH_TIMEOUT_SECS,
            idle_slack: IDLE_SLACK,
            backoff: ResetAfterHealthy::for_watch_errors(),
            stats: Arc::default(),
            metrics: MetricsHandle::default(),
        }
    }

    /// Reports to `metrics` as well as to [`WatcherConfig::stats`].
    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_metrics(self, metrics: MetricsHandle) -> WatcherConfig {
        WatcherConfig { metrics, ..self }
    }

    fn record_list(&self) {
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        self.metrics.watch_listed(&self.name);
    }

    fn record_event(&self) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        self.metrics.watch_event(&self.name);
    }

    fn record_failure(&self, expired: bool) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.metrics.watch_failed(&self.name, expired);
    }
}

/// Starts a task that keeps a [`Store`] of `project(object)` for every object of the
/// collection, and calls `on_event` after the store has taken each change (so a
/// reconcile triggered by the event sees it). An object whose projection is `None` is
/// not cached (and is removed if it was).
///
/// The task ends when `shutdown` says so; it never ends on its own.
pub(crate) fn spawn_reflector<T, P, L, F, H>(
    lw: L,
    config: WatcherConfig,
    project: F,
    on_event: H,
    shutdown: watch::Receiver<bool>,
) -> (Store<P>, JoinHandle<()>)
where
    T: Resource + Send + 'static,
    P: Send + Sync + 'static,
    L: ListWatch<T>,
    F: Fn(&T) -> Option<P> + Send + 'static,
    H: FnMut(Event<T>) + Send + 'static,
{
    spawn_reflector_into(Store::new(), lw, config, project, on_event, shutdown)
}

/// [`spawn_reflector`] filling a store the caller made, for handlers that read the
/// projections (a relist hands them only the keys).
pub(crate) fn spawn_reflector_into<T, P, L, F, H>(
    store: Store<P>,
    lw: L,
    config: WatcherConfig,
    project: F,
    on_event: H,
    shutdown: watch::Receiver<bool>,
) -> (Store<P>, JoinHandle<()>)
where
    T: Resource + Send + 'static,
    P: Send + Sync + 'static,
    L: ListWatch<T>,
    F: Fn(&T) -> Option<P> + Send + 'static,
    H: FnMut(Event<T>) + Send + 'static,
{
    let reflector = Reflector {
        lw,
        config,
        store: store.clone(),
        project,
        on_event,
    };
    let task = tokio::spawn(reflector.run(shutdown));
    (store, task)
}

struct Reflector<L, P, F, H> {
    lw: L,
    config: WatcherConfig,
    store: Store<P>,
    project: F,
    on_event: H,
}

// === impl Reflector ===

impl<L, P, F, H> Reflector<L, P, F, H> {
    async fn run<T>(mut self, mut shutdown: watch::Receiver<bool>)
    where
        T: Resource + Send + 'static,
        L: ListWatch<T>,
        F: Fn(&T) -> Option<P>,
        H: FnMut(Event<T>),
    {
        let mut state = WatchState::Empty;
        let mut stream: Option<OpenWatch<L::Stream>> = None;
        let mut rng = SplitMix64::from_entropy();
        // The projections of the list in progress, swapped into the store at its end.
        let mut listed: Vec<(ObjectKey, String, P)> = Vec::new();
        let mut list_started = Instant::now();
        loop {
            if state == WatchState::Empty {
                // A list starts (or starts over): whatever a failed one left goes.
                listed = Vec::new();
                list_started = Instant::now();
            }
            let input = tokio::select! {
                biased;
                _ = shutdown_requested(&mut shutdown) => return,
                input = perform(&self.lw, &self.config, state.next_io(), &mut stream, &mut rng) => input,
            };
            let (next, output) = step(state, input);
            state = next;
            if !matches!(state, WatchState::Watching { .. }) {
                // Dropping the stream closes its connection.
                stream = None;
            }
            match output {
                Output::Nothing => self.config.backoff.record_success(Instant::now()),
                Output::Page { items, last } => {
                    self.config.backoff.record_success(Instant::now());
                    // Projected page by page: the full objects go with their page.
                    listed.extend(items.iter().filter_map(|o| self.project_listed(o)));
                    drop(items);
                    if last {
                        self.config.record_list();
                        self.relisted(std::mem::take(&mut listed), list_started);
                    }
                }
                Output::Emit(event) => {
                    self.config.backoff.record_success(Instant::now());
                    self.config.record_event();
                    self.apply(event);
                }
                Output::Failed(err) => {
                    self.config.record_failure(err.is_expired());
                    let delay = self.config.backoff.record_failure(Instant::now());
                    let name = &self.config.name;
                    if err.is_expired() {
                        tracing::info!(watch = %name, error = %err, retry_in = ?delay, "watch restarting");
                    } else {
                        tracing::warn!(watch = %name, error = %err, retry_in = ?delay, "watch failed");
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown_requested(&mut shutdown) => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One listed object's key, version and projection (`None`: not kept).
    fn project_listed<T>(&self, o: &T) -> Option<(ObjectKey, String, P)>
    where
        T: Resource,
        F: Fn(&T) -> Option<P>,
    {
        let version = o.meta().resource_version.clone().unwrap_or_default();
        Some((ObjectKey::of(o.meta())?, version, (self.project)(o)?))
    }

    /// A (re)list is complete: swap the store, then tell the caller which keys exist.
    fn relisted<T>(&mut self, listed: Vec<(ObjectKey, String, P)>, list_started: Instant)
    where
        H: FnMut(Event<T>),
    {
        let keys: Vec<ObjectKey> = listed.iter().map(|(k, _, _)| k.clone()).collect();
        self.store.replace_all_listed(listed, Some(list_started));
        tracing::debug!(watch = %self.config.name, objects = keys.len(), "listed");
        (self.on_event)(Event::Restarted(keys));
    }

    /// Store first, then the caller, unless the event only echoes a write of ours the
    /// store already held: the reconcile that wrote it has accounted for it, and waking it
    /// again for each of its own writes re-planned a 10,000-namespace CR for every few
    /// hundred echoes of one refresh.
    fn apply<T>(&mut self, event: Event<T>)
    where
        T: Resource,
        F: Fn(&T) -> Option<P>,
        H: FnMut(Event<T>),
    {
        let echo = match &event {
            Event::Restarted(_) => false,
            Event::Applied(obj) => match ObjectKey::of(obj.meta()) {
                Some(key) => {
                    let version = obj.meta().resource_version.as_deref().unwrap_or_default();
                    // Our own write's echo is already projected, from the write's answer.
                    if self.store.settle_echo(&key, version) {
                        true
                    } else {
                        let version = version.to_string();
                        match (self.project)(obj) {
                            Some(p) => self.store.apply(Change::Applied(key, version, p)),
                            None => self.store.apply(Change::Deleted(key, version)),
                        }
                    }
                }
                None => false,
            },
            Event::Deleted(obj) => match ObjectKey::of(obj.meta()) {
                Some(key) => {
                    let version = obj.meta().resource_version.clone().unwrap_or_default();
                    self.store.apply(Change::Deleted(key, version))
                }
                None => false,
            },
        };
        if !echo {
            (self.on_event)(event);
        }
    }
}

/// A watch stream with what the driver needs to judge how it ended.
struct OpenWatch<S> {
    events: S,
    opened: Instant,
    seen: u64,
}

/// Performs the IO a state asked for and classifies the answer.
async fn perform<T, L: ListWatch<T>>(
    lw: &L,
    config: &WatcherConfig,
    io: Io,
    stream: &mut Option<OpenWatch<L::Stream>>,
    rng: &mut SplitMix64,
) -> Input<T, L::Error> {
    match io {
        Io::List { continue_token } => {
            let page = PageRequest {
                limit: config.page_size,
                continue_token,
            };
            match lw.list(&page).await {
                Ok(list) => Input::Page(list),
                Err(error) => {
                    let gone = L::is_gone(&error);
                    Input::ListFailed { error, gone }
                }
            }
        }
        Io::OpenWatch { resource_version } => {
            let req = WatchRequest {
                resource_version,
                timeout_seconds: jittered_timeout(config.watch_timeout_secs, rng),
            };
            match lw.watch(&req).await {
                Ok(s) => {
                    *stream = Some(OpenWatch {
                        events: s,
                        opened: Instant::now(),
                        seen: 0,
                    });
                    Input::WatchOpened
                }
                Err(error) => {
                    let gone = L::is_gone(&error);
                    Input::WatchOpenFailed { error, gone }
                }
            }
        }
        Io::NextEvent => {
            let Some(s) = stream.as_mut() else {
                // Not reachable: the stream is kept exactly while Watching.
                return Input::StreamEnded {
                    lasted: Duration::ZERO,
                    events: 0,
                };
            };
            let idle = Duration::from_secs(config.watch_timeout_secs.into()) + config.idle_slack;
            match tokio::time::timeout(idle, s.events.next_event()).await {
                Err(_) => Input::StreamIdle { after: idle },
                Ok(None) => Input::StreamEnded {
                    lasted: s.opened.elapsed(),
                    events: s.seen,
                },
                Ok(Some(Ok(event))) => {
                    s.seen += 1;
                    Input::Event(event)
                }
                Ok(Some(Err(error))) => {
                    let gone = L::is_gone(&error);
                    Input::StreamFailed { error, gone }
                }
            }
        }
    }
}

/// `secs` minus up to [`WATCH_TIMEOUT_JITTER`] of it, in whole seconds, at least 1.
fn jittered_timeout(secs: u32, rng: &mut SplitMix64) -> u32 {
    let timeout = rng.shave(Duration::from_secs(secs.into()), WATCH_TIMEOUT_JITTER);
    u32::try_from(timeout.as_secs()).unwrap_or(secs).max(1)
}

#[cfg(test)]
mod tests;
