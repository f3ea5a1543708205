//! List+watch of one collection, kept in a [`Store`], with events for the controller.
//!
//! Two layers, as in kube-runtime:
//!
//! - A pure state machine, [`step`]: `Empty -> InitPage -> InitListed -> Watching`. It
//!   decides what to do with each answer (keep paging, relist, re-watch, emit) and is
//!   tested without a network. It owns no IO and no timer.
//! - A driver, [`spawn_reflector`], that performs the IO the state asks for
//!   ([`State::next_io`]), feeds the answers to `step`, applies the outputs to the store
//!   and the caller's callback, and backs off after failures (0.8 s doubling to 30 s,
//!   reset after 2 minutes of health). Backoff wraps the machine from outside.
//!
//! Semantics, after client-go's reflector:
//! - The initial list is paginated (`limit` 500, then `continue`); a page may be short or
//!   empty, so only the presence of `continue` decides whether another page follows.
//!   An expired continue token (410) restarts the list from scratch.
//! - The full list replaces the store at once: what it did not return is gone. The store
//!   is marked synced after the first full list.
//! - The watch starts at the list's resourceVersion with bookmarks and a server timeout
//!   of about 290 s (jittered, so watchers do not reconnect in lockstep); the client
//!   gives up on a stream silent for a little longer than that.
//! - Bookmarks advance the resourceVersion and emit nothing. A clean end of the stream
//!   re-watches from the last resourceVersion. 410, as an HTTP status or as an ERROR
//!   event (code 410, reason `Expired` or `Gone`), relists. resourceVersion is opaque.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::k8s::types::{ObjectList, Resource, Status, WatchEvent};
use crate::k8s::{self, Client, ListParams, WatchParams, WatchStream};
use crate::runtime::backoff::{ResetAfterHealthy, SplitMix64};
use crate::runtime::shutdown_requested;
use crate::runtime::store::{Change, ObjectKey, Store};

/// Page size of the initial list: client-go's choice, small enough for the API server to
/// serve from its cache without a spike, large enough that a few pages cover most
/// clusters.
pub const PAGE_SIZE: u32 = 500;
/// Server-side watch timeout, a little under the API server's 5-minute minimum request
/// timeout so the server ends watches cleanly rather than cutting them.
pub const WATCH_TIMEOUT_SECS: u32 = 290;
/// Up to this fraction of the watch timeout is shaved off at random per watch.
pub const WATCH_TIMEOUT_JITTER: f64 = 0.1;
/// How much longer than the server timeout a silent stream is given before the client
/// gives up on it: a dead connection (no FIN, no RST) must not stall the cache forever.
pub const IDLE_SLACK: Duration = Duration::from_secs(30);
/// A watch that ends cleanly sooner than this without a single event is treated as a
/// failure (and backed off), as client-go does: something between us and the API
/// server is closing streams, and re-watching at once would be a hot loop.
pub const MIN_WATCH_DURATION: Duration = Duration::from_secs(1);

// === the source: list and watch ===

/// One page of the list to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub continue_token: Option<String>,
}

/// Where to start a watch and when the server should end it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    pub resource_version: String,
    pub timeout_seconds: u32,
}

/// A collection that can be listed and watched (the collection path and selectors are
/// bound in the implementor). Implemented for [`KubeListWatch`]; tests use a fake.
pub trait ListWatch<T>: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    type Stream: EventStream<T, Error = Self::Error> + Send + 'static;

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
pub trait EventStream<T> {
    type Error;

    /// The next event; `None` when the server ended the stream cleanly.
    fn next_event(
        &mut self,
    ) -> impl Future<Output = Option<Result<WatchEvent<T>, Self::Error>>> + Send;
}

/// A collection of the Kubernetes API, listed and watched through [`Client`].
#[derive(Clone, Debug)]
pub struct KubeListWatch {
    pub client: Client,
    /// E.g. `/api/v1/secrets`, from [`crate::k8s::kind::Kind::collection`].
    pub collection: String,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

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

impl<T: DeserializeOwned + Send> EventStream<T> for WatchStream<T> {
    type Error = k8s::Error;

    async fn next_event(&mut self) -> Option<Result<WatchEvent<T>, k8s::Error>> {
        self.next().await
    }
}

// === the state machine ===

/// Where the watcher is. `InitPage` buffers the pages listed so far, so the store is
/// swapped only once the whole list is in.
#[derive(Clone, Debug, PartialEq)]
pub enum State<T> {
    /// Nothing listed: list from the first page.
    Empty,
    /// Listing: fetch the page after `continue_token`.
    InitPage {
        continue_token: String,
        objects: Vec<T>,
    },
    /// Listed (or between watches): open a watch at `resource_version`.
    InitListed { resource_version: String },
    /// A watch is open: read its next event.
    Watching { resource_version: String },
}

/// The IO a state asks the driver to perform next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Io {
    List { continue_token: Option<String> },
    OpenWatch { resource_version: String },
    NextEvent,
}

/// The answer to the IO, as the machine sees it (errors already classified).
#[derive(Debug)]
pub enum Input<T, E> {
    Page(ObjectList<T>),
    ListFailed {
        error: E,
        gone: bool,
    },
    WatchOpened,
    WatchOpenFailed {
        error: E,
        gone: bool,
    },
    Event(WatchEvent<T>),
    /// The server ended the stream cleanly, after `lasted` and `events` events.
    StreamEnded {
        lasted: Duration,
        events: u64,
    },
    StreamFailed {
        error: E,
        gone: bool,
    },
    /// The stream was silent for longer than the server's timeout plus slack.
    StreamIdle {
        after: Duration,
    },
}

/// What the machine's caller sees.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<T> {
    /// Created or modified.
    Applied(T),
    Deleted(T),
    /// A full (re)list: these are all the objects there are.
    Restarted(Vec<T>),
}

/// What one step produced.
#[derive(Debug)]
pub enum Output<T, E> {
    Nothing,
    Emit(Event<T>),
    /// The driver should log this and back off before the next IO.
    Failed(WatcherError<E>),
}

/// Why the watcher had to retry, by phase.
#[derive(Debug)]
pub enum WatcherError<E> {
    /// A page of the list failed (`expired`: its continue token was too old, so the
    /// list starts over).
    InitialListFailed { source: E, expired: bool },
    /// The list answered without a resourceVersion, so there is nowhere to watch from.
    ListWithoutResourceVersion,
    /// Opening the watch failed (`expired`: the list's version is too old; relist).
    WatchStartFailed { source: E, expired: bool },
    /// The stream failed mid-way (`expired`: relist).
    WatchFailed { source: E, expired: bool },
    /// The server sent an ERROR event.
    WatchErrorEvent { status: Status },
    /// No event, not even a bookmark, for this long.
    WatchIdle { after: Duration },
    /// The stream ended cleanly, without an event, right after it opened.
    WatchTooShort { lasted: Duration },
}

// === impl WatcherError ===

impl<E> WatcherError<E> {
    /// Whether the failure was a 410 that forced a relist: routine (etcd compaction),
    /// logged quietly.
    pub fn is_expired(&self) -> bool {
        match self {
            Self::InitialListFailed { expired, .. }
            | Self::WatchStartFailed { expired, .. }
            | Self::WatchFailed { expired, .. } => *expired,
            Self::WatchErrorEvent { status } => is_gone_status(status),
            Self::ListWithoutResourceVersion
            | Self::WatchIdle { .. }
            | Self::WatchTooShort { .. } => false,
        }
    }
}

impl<E: fmt::Display> fmt::Display for WatcherError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InitialListFailed { source, expired } => {
                write!(f, "initial list failed: {source}")?;
                if *expired {
                    f.write_str(" (continue token expired; listing again from the start)")?;
                }
                Ok(())
            }
            Self::ListWithoutResourceVersion => f.write_str(
                "initial list failed: the answer carried no resourceVersion to watch from",
            ),
            Self::WatchStartFailed { source, expired } => {
                write!(f, "starting the watch failed: {source}")?;
                if *expired {
                    f.write_str(" (resourceVersion expired; relisting)")?;
                }
                Ok(())
            }
            Self::WatchFailed { source, expired } => {
                write!(f, "the watch stream failed: {source}")?;
                if *expired {
                    f.write_str(" (resourceVersion expired; relisting)")?;
                }
                Ok(())
            }
            Self::WatchErrorEvent { status } => write!(
                f,
                "the API server ended the watch with an error: {} {} ({}){}",
                status.code,
                status.reason,
                status.message,
                if is_gone_status(status) {
                    "; relisting"
                } else {
                    ""
                }
            ),
            Self::WatchIdle { after } => write!(
                f,
                "the watch stream was silent for {after:?}; the connection is presumed dead"
            ),
            Self::WatchTooShort { lasted } => write!(
                f,
                "the watch stream ended after {lasted:?} without any event; is a proxy closing it?"
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for WatcherError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InitialListFailed { source, .. }
            | Self::WatchStartFailed { source, .. }
            | Self::WatchFailed { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An ERROR event's Status meaning "too old": code 410, or reason Expired (Gone on old
/// servers).
fn is_gone_status(status: &Status) -> bool {
    status.code == 410 || status.reason == "Expired" || status.reason == "Gone"
}

// === impl Event ===

impl<T> Event<T> {
    /// The objects the event is about (all of them for a relist).
    pub fn objects(&self) -> &[T] {
        match self {
            Event::Applied(obj) | Event::Deleted(obj) => std::slice::from_ref(obj),
            Event::Restarted(all) => all,
        }
    }
}

impl<T: Resource> Event<T> {
    /// The keys of the objects the event is about: what a controller watching these
    /// objects themselves enqueues.
    pub fn keys(&self) -> impl Iterator<Item = ObjectKey> + '_ {
        self.objects()
            .iter()
            .filter_map(|o| ObjectKey::of(o.meta()))
    }
}

// === impl State ===

impl<T> State<T> {
    pub fn next_io(&self) -> Io {
        match self {
            State::Empty => Io::List {
                continue_token: None,
            },
            State::InitPage { continue_token, .. } => Io::List {
                continue_token: Some(continue_token.clone()),
            },
            State::InitListed { resource_version } => Io::OpenWatch {
                resource_version: resource_version.clone(),
            },
            State::Watching { .. } => Io::NextEvent,
        }
    }
}

/// The pure transition: given where we are and the answer to the IO this state asked
/// for, where we go and what comes out. An answer that does not fit the state (a driver
/// bug) leaves the state as it is and produces nothing.
pub fn step<T: Resource, E>(state: State<T>, input: Input<T, E>) -> (State<T>, Output<T, E>) {
    use Input as I;
    use State as S;
    match (state, input) {
        (S::Empty, I::Page(page)) => on_page(Vec::new(), page),
        (S::InitPage { objects, .. }, I::Page(page)) => on_page(objects, page),
        (state @ (S::Empty | S::InitPage { .. }), I::ListFailed { error, gone }) => {
            // Retry the same page, unless its continue token expired.
            let next = if gone { S::Empty } else { state };
            let err = WatcherError::InitialListFailed {
                source: error,
                expired: gone,
            };
            (next, Output::Failed(err))
        }
        (S::InitListed { resource_version }, I::WatchOpened) => {
            (S::Watching { resource_version }, Output::Nothing)
        }
        (S::InitListed { resource_version }, I::WatchOpenFailed { error, gone }) => {
            let next = if gone {
                S::Empty
            } else {
                S::InitListed { resource_version }
            };
            let err = WatcherError::WatchStartFailed {
                source: error,
                expired: gone,
            };
            (next, Output::Failed(err))
        }
        (S::Watching { resource_version }, I::Event(event)) => on_event(resource_version, event),
        (S::Watching { resource_version }, I::StreamEnded { lasted, events }) => {
            let next = S::InitListed { resource_version };
            if events == 0 && lasted < MIN_WATCH_DURATION {
                (next, Output::Failed(WatcherError::WatchTooShort { lasted }))
            } else {
                (next, Output::Nothing)
            }
        }
        (S::Watching { resource_version }, I::StreamFailed { error, gone }) => {
            let next = if gone {
                S::Empty
            } else {
                S::InitListed { resource_version }
            };
            let err = WatcherError::WatchFailed {
                source: error,
                expired: gone,
            };
            (next, Output::Failed(err))
        }
        (S::Watching { resource_version }, I::StreamIdle { after }) => (
            S::InitListed { resource_version },
            Output::Failed(WatcherError::WatchIdle { after }),
        ),
        (state, _) => (state, Output::Nothing),
    }
}

fn on_page<T, E>(mut objects: Vec<T>, page: ObjectList<T>) -> (State<T>, Output<T, E>) {
    objects.extend(page.items);
    if let Some(token) = page.metadata.continue_token.filter(|t| !t.is_empty()) {
        let next = State::InitPage {
            continue_token: token,
            objects,
        };
        return (next, Output::Nothing);
    }
    match page.metadata.resource_version.filter(|rv| !rv.is_empty()) {
        Some(resource_version) => (
            State::InitListed { resource_version },
            Output::Emit(Event::Restarted(objects)),
        ),
        None => (
            State::Empty,
            Output::Failed(WatcherError::ListWithoutResourceVersion),
        ),
    }
}

fn on_event<T: Resource, E>(rv: String, event: WatchEvent<T>) -> (State<T>, Output<T, E>) {
    // An empty version would mean "from now" to the server and skip events: keep ours.
    let advanced = |obj: &T, rv: String| {
        obj.meta()
            .resource_version
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or(rv)
    };
    match event {
        WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
            let resource_version = advanced(&obj, rv);
            let next = State::Watching { resource_version };
            (next, Output::Emit(Event::Applied(obj)))
        }
        WatchEvent::Deleted(obj) => {
            let resource_version = advanced(&obj, rv);
            let next = State::Watching { resource_version };
            (next, Output::Emit(Event::Deleted(obj)))
        }
        WatchEvent::Bookmark { resource_version } => {
            let resource_version = if resource_version.is_empty() {
                rv
            } else {
                resource_version
            };
            (State::Watching { resource_version }, Output::Nothing)
        }
        WatchEvent::Error(status) => {
            // After an ERROR event the server ends the stream; do not wait for that.
            let next = if is_gone_status(&status) {
                State::Empty
            } else {
                State::InitListed {
                    resource_version: rv,
                }
            };
            (
                next,
                Output::Failed(WatcherError::WatchErrorEvent { status }),
            )
        }
    }
}

// === the driver ===

/// Settings of one reflector.
#[derive(Clone, Debug)]
pub struct WatcherConfig {
    /// Names the watched collection in logs.
    pub name: String,
    pub page_size: u32,
    pub watch_timeout_secs: u32,
    pub idle_slack: Duration,
    pub backoff: ResetAfterHealthy,
    /// Counters the reflector updates; clone the `Arc` first to read them (metrics).
    pub stats: Arc<WatcherStats>,
}

/// What a reflector has been through, for metrics and debugging.
#[derive(Debug, Default)]
pub struct WatcherStats {
    lists: AtomicU64,
    events: AtomicU64,
    failures: AtomicU64,
}

// === impl WatcherStats ===

impl WatcherStats {
    /// Full lists completed (the first one and every relist).
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// Watch events applied (bookmarks excluded).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Failures that were backed off (410s included).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl WatcherConfig {
    /// The defaults above, with 0.8 s..30 s backoff reset after 2 minutes of health.
    #[must_use]
    pub fn new(name: impl Into<String>) -> WatcherConfig {
        WatcherConfig {
            name: name.into(),
            page_size: PAGE_SIZE,
            watch_timeout_secs: WATCH_TIMEOUT_SECS,
            idle_slack: IDLE_SLACK,
            backoff: ResetAfterHealthy::for_watch_errors(),
            stats: Arc::default(),
        }
    }
}

/// Starts a task that keeps a [`Store`] of `project(object)` for every object of the
/// collection, and calls `on_event` after the store has taken each change (so a
/// reconcile triggered by the event sees it). An object whose projection is `None` is
/// not cached (and is removed if it was).
///
/// The task ends when `shutdown` says so; it never ends on its own.
pub fn spawn_reflector<T, P, L, F, H>(
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
    let store = Store::new();
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

impl<L, P, F, H> Reflector<L, P, F, H> {
    async fn run<T>(mut self, mut shutdown: watch::Receiver<bool>)
    where
        T: Resource + Send + 'static,
        L: ListWatch<T>,
        F: Fn(&T) -> Option<P>,
        H: FnMut(Event<T>),
    {
        let mut state = State::Empty;
        let mut stream: Option<OpenWatch<L::Stream>> = None;
        let mut rng = SplitMix64::from_entropy();
        loop {
            let input = tokio::select! {
                biased;
                _ = shutdown_requested(&mut shutdown) => return,
                input = perform(&self.lw, &self.config, state.next_io(), &mut stream, &mut rng) => input,
            };
            let (next, output) = step(state, input);
            state = next;
            if !matches!(state, State::Watching { .. }) {
                // Dropping the stream closes its connection.
                stream = None;
            }
            match output {
                Output::Nothing => self.config.backoff.record_success(Instant::now()),
                Output::Emit(event) => {
                    self.config.backoff.record_success(Instant::now());
                    let counter = match event {
                        Event::Restarted(_) => &self.config.stats.lists,
                        _ => &self.config.stats.events,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.apply(event);
                }
                Output::Failed(err) => {
                    self.config.stats.failures.fetch_add(1, Ordering::Relaxed);
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

    /// Store first, then the caller.
    fn apply<T>(&mut self, event: Event<T>)
    where
        T: Resource,
        F: Fn(&T) -> Option<P>,
        H: FnMut(Event<T>),
    {
        match &event {
            Event::Restarted(objects) => {
                let project = &self.project;
                self.store.replace_all(
                    objects
                        .iter()
                        .filter_map(|o| Some((ObjectKey::of(o.meta())?, project(o)?))),
                );
                tracing::debug!(watch = %self.config.name, objects = objects.len(), "listed");
            }
            Event::Applied(obj) => {
                if let Some(key) = ObjectKey::of(obj.meta()) {
                    match (self.project)(obj) {
                        Some(p) => self.store.apply(Change::Applied(key, p)),
                        None => self.store.apply(Change::Deleted(key)),
                    }
                }
            }
            Event::Deleted(obj) => {
                if let Some(key) = ObjectKey::of(obj.meta()) {
                    self.store.apply(Change::Deleted(key));
                }
            }
        }
        (self.on_event)(event);
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

/// `secs` minus up to [`WATCH_TIMEOUT_JITTER`] of it, at least 1.
fn jittered_timeout(secs: u32, rng: &mut SplitMix64) -> u32 {
    let shave = (f64::from(secs) * WATCH_TIMEOUT_JITTER * rng.next_unit()) as u32;
    secs.saturating_sub(shave).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::types::{ListMeta, ObjectMeta};
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    #[derive(Clone, Debug, PartialEq)]
    struct Obj {
        metadata: ObjectMeta,
        v: u32,
    }

    impl Resource for Obj {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
    }

    fn obj(name: &str, rv: &str, v: u32) -> Obj {
        Obj {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            v,
        }
    }

    fn names(objs: &[Obj]) -> Vec<&str> {
        objs.iter()
            .map(|o| o.metadata.name.as_deref().unwrap())
            .collect()
    }

    fn page(items: Vec<Obj>, rv: Option<&str>, cont: Option<&str>) -> ObjectList<Obj> {
        ObjectList {
            metadata: ListMeta {
                resource_version: rv.map(String::from),
                continue_token: cont.map(String::from),
            },
            items,
        }
    }

    #[derive(Debug, PartialEq)]
    struct FakeError(u16);

    impl fmt::Display for FakeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "fake HTTP {}", self.0)
        }
    }

    impl std::error::Error for FakeError {}

    fn status(code: u16, reason: &str) -> Status {
        Status {
            status: "Failure".into(),
            message: "m".into(),
            reason: reason.into(),
            code,
        }
    }

    fn rv(state: &State<Obj>) -> Option<&str> {
        match state {
            State::InitListed { resource_version } | State::Watching { resource_version } => {
                Some(resource_version)
            }
            _ => None,
        }
    }

    type Step = (State<Obj>, Output<Obj, FakeError>);

    fn watching(rv: &str) -> State<Obj> {
        State::Watching {
            resource_version: rv.into(),
        }
    }

    fn ev(state: State<Obj>, e: WatchEvent<Obj>) -> Step {
        step(state, Input::Event(e))
    }

    // === the state machine, without a network ===

    #[test]
    fn empty_lists_from_the_first_page() {
        assert_eq!(
            State::<Obj>::Empty.next_io(),
            Io::List {
                continue_token: None
            }
        );
    }

    #[test]
    fn pages_accumulate_until_continue_is_absent() {
        let (s, out) = step::<_, FakeError>(
            State::Empty,
            Input::Page(page(vec![obj("a", "1", 0)], Some("9"), Some("c1"))),
        );
        assert!(matches!(out, Output::Nothing));
        assert_eq!(
            s.next_io(),
            Io::List {
                continue_token: Some("c1".into())
            }
        );
        // A short, even empty, page with a continue token is not the end.
        let (s, out) = step::<_, FakeError>(s, Input::Page(page(vec![], Some("9"), Some("c2"))));
        assert!(matches!(out, Output::Nothing));
        let (s, out) = step::<_, FakeError>(
            s,
            Input::Page(page(vec![obj("b", "2", 0)], Some("9"), None)),
        );
        match out {
            Output::Emit(Event::Restarted(all)) => assert_eq!(names(&all), vec!["a", "b"]),
            other => panic!("expected Restarted, got {other:?}"),
        }
        assert_eq!(
            s.next_io(),
            Io::OpenWatch {
                resource_version: "9".into()
            }
        );
    }

    #[test]
    fn empty_continue_token_ends_the_list() {
        let (s, out) =
            step::<_, FakeError>(State::Empty, Input::Page(page(vec![], Some("3"), Some(""))));
        assert!(matches!(out, Output::Emit(Event::Restarted(v)) if v.is_empty()));
        assert_eq!(rv(&s), Some("3"));
    }

    #[test]
    fn expired_continue_token_restarts_the_list_from_scratch() {
        let (s, _) = step::<_, FakeError>(
            State::Empty,
            Input::Page(page(vec![obj("a", "1", 0)], None, Some("c1"))),
        );
        let (s, out) = step(
            s,
            Input::ListFailed {
                error: FakeError(410),
                gone: true,
            },
        );
        assert!(
            matches!(out, Output::Failed(ref e @ WatcherError::InitialListFailed { .. }) if e.is_expired())
        );
        assert_eq!(
            s,
            State::Empty,
            "buffered objects of the stale list were kept"
        );
    }

    #[test]
    fn list_error_retries_the_same_page() {
        let (s, _) = step::<_, FakeError>(
            State::Empty,
            Input::Page(page(vec![obj("a", "1", 0)], None, Some("c1"))),
        );
        let (s, out) = step(
            s,
            Input::ListFailed {
                error: FakeError(500),
                gone: false,
            },
        );
        assert!(matches!(
            out,
            Output::Failed(WatcherError::InitialListFailed { expired: false, .. })
        ));
        assert_eq!(
            s.next_io(),
            Io::List {
                continue_token: Some("c1".into())
            }
        );
    }

    #[test]
    fn list_without_resource_version_fails_and_relists() {
        let (s, out) = step::<_, FakeError>(
            State::Empty,
            Input::Page(page(vec![obj("a", "1", 0)], None, None)),
        );
        assert!(matches!(
            out,
            Output::Failed(WatcherError::ListWithoutResourceVersion)
        ));
        assert_eq!(s, State::Empty);
    }

    #[test]
    fn watch_opens_at_the_list_version() {
        let s = State::InitListed {
            resource_version: "7".into(),
        };
        let (s, out) = step::<_, FakeError>(s, Input::WatchOpened);
        assert!(matches!(out, Output::Nothing));
        assert_eq!(s, watching("7"));
        assert_eq!(s.next_io(), Io::NextEvent);
    }

    #[test]
    fn watch_start_410_relists_and_other_errors_retry_the_watch() {
        let listed = || State::InitListed {
            resource_version: "7".into(),
        };
        let (s, out) = step::<Obj, _>(
            listed(),
            Input::WatchOpenFailed {
                error: FakeError(410),
                gone: true,
            },
        );
        assert_eq!(s, State::Empty);
        assert!(
            matches!(out, Output::Failed(ref e @ WatcherError::WatchStartFailed { .. }) if e.is_expired())
        );
        let (s, out) = step::<Obj, _>(
            listed(),
            Input::WatchOpenFailed {
                error: FakeError(500),
                gone: false,
            },
        );
        assert_eq!(s, listed());
        assert!(matches!(out, Output::Failed(ref e) if !e.is_expired()));
    }

    #[test]
    fn events_advance_the_version_and_are_emitted() {
        let (s, out) = ev(watching("1"), WatchEvent::Added(obj("a", "2", 0)));
        assert_eq!(rv(&s), Some("2"));
        assert!(matches!(out, Output::Emit(Event::Applied(ref o)) if o.v == 0));
        let (s, out) = ev(s, WatchEvent::Modified(obj("a", "3", 1)));
        assert_eq!(rv(&s), Some("3"));
        assert!(matches!(out, Output::Emit(Event::Applied(ref o)) if o.v == 1));
        let (s, out) = ev(s, WatchEvent::Deleted(obj("a", "4", 1)));
        assert_eq!(s, watching("4"));
        assert!(matches!(out, Output::Emit(Event::Deleted(_))));
    }

    #[test]
    fn event_without_version_keeps_the_last_one() {
        let mut o = obj("a", "x", 0);
        o.metadata.resource_version = None;
        let (s, _) = ev(watching("5"), WatchEvent::Added(o.clone()));
        assert_eq!(s, watching("5"));
        // Empty would mean "from now" to the server: events would be skipped.
        o.metadata.resource_version = Some(String::new());
        let (s, _) = ev(s, WatchEvent::Modified(o));
        assert_eq!(s, watching("5"));
        let (s, _) = ev(
            s,
            WatchEvent::Bookmark {
                resource_version: String::new(),
            },
        );
        assert_eq!(s, watching("5"));
    }

    #[test]
    fn event_keys_name_every_object() {
        let mut nameless = obj("x", "1", 0);
        nameless.metadata.name = None;
        let e = Event::Restarted(vec![obj("a", "1", 0), nameless, obj("b", "1", 0)]);
        let keys: Vec<_> = e.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, vec!["ns/a", "ns/b"]);
        let e = Event::Deleted(obj("c", "2", 0));
        assert_eq!(e.keys().count(), 1);
        assert_eq!(e.objects().len(), 1);
    }

    #[test]
    fn bookmark_advances_the_version_and_emits_nothing() {
        let (s, out) = ev(
            watching("1"),
            WatchEvent::Bookmark {
                resource_version: "99".into(),
            },
        );
        assert_eq!(s, watching("99"));
        assert!(matches!(out, Output::Nothing));
    }

    #[test]
    fn clean_end_rewatches_from_the_last_version() {
        let ended = Input::StreamEnded {
            lasted: Duration::from_secs(290),
            events: 0,
        };
        let (s, out) = step::<Obj, FakeError>(watching("42"), ended);
        assert!(matches!(out, Output::Nothing));
        assert_eq!(
            s.next_io(),
            Io::OpenWatch {
                resource_version: "42".into()
            }
        );
    }

    #[test]
    fn very_short_empty_watch_is_a_failure() {
        let ended = Input::StreamEnded {
            lasted: Duration::from_millis(20),
            events: 0,
        };
        let (s, out) = step::<Obj, FakeError>(watching("42"), ended);
        assert_eq!(
            s,
            State::InitListed {
                resource_version: "42".into()
            }
        );
        assert!(matches!(
            out,
            Output::Failed(WatcherError::WatchTooShort { .. })
        ));
        // A short watch that did deliver something is fine.
        let ended = Input::StreamEnded {
            lasted: Duration::from_millis(20),
            events: 1,
        };
        let (_, out) = step::<Obj, FakeError>(watching("42"), ended);
        assert!(matches!(out, Output::Nothing));
    }

    #[test]
    fn gone_error_event_relists() {
        for st in [
            status(410, "Expired"),
            status(410, "Gone"),
            status(0, "Expired"),
            status(410, ""),
        ] {
            let (s, out) = ev(watching("1"), WatchEvent::Error(st.clone()));
            assert_eq!(s, State::Empty, "{st:?} did not relist");
            assert!(
                matches!(out, Output::Failed(ref e @ WatcherError::WatchErrorEvent { .. }) if e.is_expired())
            );
        }
    }

    #[test]
    fn other_error_event_rewatches_from_the_last_version() {
        let (s, out) = ev(
            watching("8"),
            WatchEvent::Error(status(500, "InternalError")),
        );
        assert_eq!(
            s,
            State::InitListed {
                resource_version: "8".into()
            }
        );
        match out {
            Output::Failed(e) => {
                assert!(!e.is_expired());
                let msg = e.to_string();
                assert!(
                    msg.contains("500") && msg.contains("InternalError"),
                    "{msg}"
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn stream_failure_410_relists_and_others_rewatch() {
        let (s, _) = step::<Obj, _>(
            watching("3"),
            Input::StreamFailed {
                error: FakeError(410),
                gone: true,
            },
        );
        assert_eq!(s, State::Empty);
        let (s, out) = step::<Obj, _>(
            watching("3"),
            Input::StreamFailed {
                error: FakeError(502),
                gone: false,
            },
        );
        assert_eq!(
            s,
            State::InitListed {
                resource_version: "3".into()
            }
        );
        assert!(matches!(
            out,
            Output::Failed(WatcherError::WatchFailed { expired: false, .. })
        ));
    }

    #[test]
    fn idle_stream_rewatches_with_a_failure() {
        let (s, out) = step::<Obj, FakeError>(
            watching("3"),
            Input::StreamIdle {
                after: Duration::from_secs(320),
            },
        );
        assert_eq!(
            s,
            State::InitListed {
                resource_version: "3".into()
            }
        );
        assert!(matches!(
            out,
            Output::Failed(WatcherError::WatchIdle { .. })
        ));
    }

    #[test]
    fn mismatched_input_changes_nothing() {
        let (s, out) = step::<Obj, FakeError>(State::Empty, Input::WatchOpened);
        assert_eq!(s, State::Empty);
        assert!(matches!(out, Output::Nothing));
    }

    #[test]
    fn watch_timeout_is_jittered_below_290() {
        let mut rng = SplitMix64::with_seed(1);
        let all: Vec<_> = (0..200).map(|_| jittered_timeout(290, &mut rng)).collect();
        assert!(all.iter().all(|t| (261..=290).contains(t)), "{all:?}");
        assert!(all.iter().any(|t| *t != all[0]), "no jitter at all");
        assert_eq!(jittered_timeout(0, &mut rng), 1);
    }

    // === properties of the machine over random answers ===

    fn arb_rv() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            (1u32..50).prop_map(|n| Some(n.to_string())),
        ]
    }

    fn arb_obj() -> impl Strategy<Value = Obj> {
        (0u8..4, arb_rv()).prop_map(|(n, rv)| {
            let mut o = obj(&format!("o{n}"), "", 0);
            o.metadata.resource_version = rv;
            o
        })
    }

    fn arb_input() -> impl Strategy<Value = Input<Obj, FakeError>> {
        let gone = any::<bool>();
        prop_oneof![
            (
                proptest::collection::vec(arb_obj(), 0..3),
                arb_rv(),
                prop_oneof![
                    Just(None),
                    Just(Some("c".to_string())),
                    Just(Some(String::new()))
                ]
            )
                .prop_map(|(items, rv, cont)| Input::Page(page(
                    items,
                    rv.as_deref(),
                    cont.as_deref()
                ))),
            gone.prop_map(|gone| Input::ListFailed {
                error: FakeError(if gone { 410 } else { 500 }),
                gone
            }),
            Just(()).prop_map(|_| Input::WatchOpened),
            gone.prop_map(|gone| Input::WatchOpenFailed {
                error: FakeError(if gone { 410 } else { 500 }),
                gone
            }),
            arb_obj().prop_map(|o| Input::Event(WatchEvent::Added(o))),
            arb_obj().prop_map(|o| Input::Event(WatchEvent::Deleted(o))),
            arb_rv().prop_map(|rv| Input::Event(WatchEvent::Bookmark {
                resource_version: rv.unwrap_or_default()
            })),
            (prop_oneof![Just(410u16), Just(500u16)]).prop_map(|c| Input::Event(
                WatchEvent::Error(status(
                    c,
                    if c == 410 { "Expired" } else { "InternalError" }
                ))
            )),
            (0u64..3000, 0u64..3).prop_map(|(ms, events)| Input::StreamEnded {
                lasted: Duration::from_millis(ms),
                events
            }),
            gone.prop_map(|gone| Input::StreamFailed {
                error: FakeError(if gone { 410 } else { 500 }),
                gone
            }),
            Just(()).prop_map(|_| Input::StreamIdle {
                after: Duration::from_secs(320)
            }),
        ]
    }

    fn is_gone_input(input: &Input<Obj, FakeError>) -> bool {
        match input {
            Input::ListFailed { gone, .. }
            | Input::WatchOpenFailed { gone, .. }
            | Input::StreamFailed { gone, .. } => *gone,
            Input::Event(WatchEvent::Error(st)) => is_gone_status(st),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn machine_invariants_hold_for_any_answers(inputs in proptest::collection::vec(arb_input(), 1..60)) {
            let mut state = State::Empty;
            let mut listed_once = false;
            for input in inputs {
                let was_watching = matches!(state, State::Watching { .. });
                let was_listing = matches!(state, State::Empty | State::InitPage { .. });
                let gone = is_gone_input(&input);
                let fits = matches!(
                    (&state, &input),
                    (State::Empty | State::InitPage { .. }, Input::Page(_) | Input::ListFailed { .. })
                        | (State::InitListed { .. }, Input::WatchOpened | Input::WatchOpenFailed { .. })
                        | (
                            State::Watching { .. },
                            Input::Event(_) | Input::StreamEnded { .. } | Input::StreamFailed { .. } | Input::StreamIdle { .. }
                        )
                );
                let (next, out) = step(state, input);
                // Where a watch would start is never empty ("from now" skips events).
                if let Some(v) = rv(&next) {
                    prop_assert!(!v.is_empty(), "empty resourceVersion in {next:?}");
                }
                match &out {
                    Output::Emit(Event::Restarted(_)) => {
                        prop_assert!(was_listing);
                        let listed = matches!(next, State::InitListed { .. });
                        prop_assert!(listed, "Restarted without a version to watch from");
                        listed_once = true;
                    }
                    Output::Emit(_) => {
                        // Object events come only from a watch, hence after a full list.
                        prop_assert!(was_watching && listed_once);
                    }
                    _ => {}
                }
                // A 410 anywhere means starting over with a list.
                if gone && fits {
                    prop_assert_eq!(&next, &State::Empty);
                }
                state = next;
            }
        }
    }

    // === the driver, against a fake API ===

    type Events = mpsc::UnboundedSender<Result<WatchEvent<Obj>, FakeError>>;

    #[derive(Default)]
    struct Script {
        lists: VecDeque<Result<ObjectList<Obj>, FakeError>>,
        watches: VecDeque<Result<FakeStream, FakeError>>,
        list_calls: Vec<(PageRequest, Instant)>,
        watch_calls: Vec<(WatchRequest, Instant)>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Script>>);

    struct FakeStream(mpsc::UnboundedReceiver<Result<WatchEvent<Obj>, FakeError>>);

    impl Fake {
        fn list(&self, r: Result<ObjectList<Obj>, FakeError>) {
            self.0.lock().unwrap().lists.push_back(r);
        }

        /// Scripts a successful watch; events are sent through the returned sender,
        /// and dropping it ends the stream cleanly.
        fn watch_ok(&self) -> Events {
            let (tx, rx) = mpsc::unbounded_channel();
            self.0.lock().unwrap().watches.push_back(Ok(FakeStream(rx)));
            tx
        }

        fn watch_err(&self, code: u16) {
            self.0
                .lock()
                .unwrap()
                .watches
                .push_back(Err(FakeError(code)));
        }

        fn list_calls(&self) -> Vec<(PageRequest, Instant)> {
            self.0.lock().unwrap().list_calls.clone()
        }

        fn watch_calls(&self) -> Vec<(WatchRequest, Instant)> {
            self.0.lock().unwrap().watch_calls.clone()
        }
    }

    /// Unscripted calls never answer, so the driver parks instead of spinning.
    async fn answer<R>(next: Option<R>) -> R {
        match next {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    impl ListWatch<Obj> for Fake {
        type Error = FakeError;
        type Stream = FakeStream;

        fn list(
            &self,
            page: &PageRequest,
        ) -> impl Future<Output = Result<ObjectList<Obj>, FakeError>> + Send {
            let next = {
                let mut s = self.0.lock().unwrap();
                s.list_calls.push((page.clone(), Instant::now()));
                s.lists.pop_front()
            };
            answer(next)
        }

        fn watch(
            &self,
            req: &WatchRequest,
        ) -> impl Future<Output = Result<FakeStream, FakeError>> + Send {
            let next = {
                let mut s = self.0.lock().unwrap();
                s.watch_calls.push((req.clone(), Instant::now()));
                s.watches.pop_front()
            };
            answer(next)
        }

        fn is_gone(e: &FakeError) -> bool {
            e.0 == 410
        }
    }

    impl EventStream<Obj> for FakeStream {
        type Error = FakeError;

        async fn next_event(&mut self) -> Option<Result<WatchEvent<Obj>, FakeError>> {
            self.0.recv().await
        }
    }

    struct Running {
        store: Store<u32>,
        events: mpsc::UnboundedReceiver<Event<Obj>>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        stats: Arc<WatcherStats>,
    }

    /// Runs a reflector that caches `v` of objects whose `v` is not 0.
    fn run(fake: &Fake) -> Running {
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, shutdown) = watch::channel(false);
        let config = WatcherConfig::new("test");
        let stats = Arc::clone(&config.stats);
        let (store, task) = spawn_reflector(
            fake.clone(),
            config,
            |o: &Obj| (o.v != 0).then_some(o.v),
            move |e| {
                let _ = tx.send(e);
            },
            shutdown,
        );
        Running {
            store,
            events,
            stop,
            task,
            stats,
        }
    }

    /// Lets the driver run until it waits on something.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn stored(store: &Store<u32>) -> Vec<(String, u32)> {
        store
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.name, *v))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn reflector_lists_all_pages_then_follows_the_watch() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![obj("a", "1", 1)], Some("10"), Some("c1"))));
        fake.list(Ok(page(vec![], Some("10"), Some("c2"))));
        fake.list(Ok(page(vec![obj("b", "2", 2)], Some("10"), None)));
        let w1 = fake.watch_ok();
        let w2 = fake.watch_ok();
        let mut r = run(&fake);

        r.store.wait_synced().await;
        match r.events.recv().await.unwrap() {
            Event::Restarted(all) => assert_eq!(names(&all), vec!["a", "b"]),
            other => panic!("expected Restarted, got {other:?}"),
        }
        assert_eq!(stored(&r.store), vec![("a".into(), 1), ("b".into(), 2)]);
        let pages: Vec<_> = fake.list_calls().into_iter().map(|(p, _)| p).collect();
        assert!(pages.iter().all(|p| p.limit == PAGE_SIZE));
        let tokens: Vec<_> = pages.iter().map(|p| p.continue_token.as_deref()).collect();
        assert_eq!(tokens, vec![None, Some("c1"), Some("c2")]);

        settle().await;
        let (first, _) = fake.watch_calls()[0].clone();
        assert_eq!(first.resource_version, "10");
        assert!((261..=290).contains(&first.timeout_seconds), "{first:?}");

        w1.send(Ok(WatchEvent::Added(obj("c", "11", 3)))).unwrap();
        assert!(matches!(r.events.recv().await.unwrap(), Event::Applied(o) if o.v == 3));
        w1.send(Ok(WatchEvent::Deleted(obj("a", "12", 1)))).unwrap();
        assert!(matches!(r.events.recv().await.unwrap(), Event::Deleted(_)));
        assert_eq!(stored(&r.store), vec![("b".into(), 2), ("c".into(), 3)]);

        // A bookmark moves the version without an event; a clean end re-watches from it.
        w1.send(Ok(WatchEvent::Bookmark {
            resource_version: "15".into(),
        }))
        .unwrap();
        let ended = Instant::now();
        drop(w1);
        settle().await;
        let calls = fake.watch_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].0.resource_version, "15");
        assert_eq!(calls[1].1, ended, "a clean end must not back off");
        assert_eq!(fake.list_calls().len(), 3, "a clean end must not relist");
        assert!(r.events.try_recv().is_err(), "a bookmark was emitted");

        w2.send(Ok(WatchEvent::Modified(obj("b", "16", 20))))
            .unwrap();
        assert!(matches!(r.events.recv().await.unwrap(), Event::Applied(o) if o.v == 20));
        assert_eq!(
            r.store.get(&ObjectKey::namespaced("ns", "b")).as_deref(),
            Some(&20)
        );
        r.stop.send(true).unwrap();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn gone_error_event_relists_and_swaps_the_store() {
        let fake = Fake::default();
        fake.list(Ok(page(
            vec![obj("a", "1", 1), obj("b", "2", 2)],
            Some("5"),
            None,
        )));
        fake.list(Ok(page(
            vec![obj("b", "7", 22), obj("c", "8", 3)],
            Some("20"),
            None,
        )));
        let w1 = fake.watch_ok();
        let _w2 = fake.watch_ok();
        let mut r = run(&fake);
        assert!(matches!(
            r.events.recv().await.unwrap(),
            Event::Restarted(_)
        ));
        settle().await;
        let failed_at = Instant::now();
        w1.send(Ok(WatchEvent::Error(status(410, "Expired"))))
            .unwrap();
        match r.events.recv().await.unwrap() {
            Event::Restarted(all) => assert_eq!(names(&all), vec!["b", "c"]),
            other => panic!("expected Restarted, got {other:?}"),
        }
        // Whatever the relist did not return is gone.
        assert_eq!(stored(&r.store), vec![("b".into(), 22), ("c".into(), 3)]);
        let lists = fake.list_calls();
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[1].0.continue_token, None);
        let waited = lists[1].1 - failed_at;
        assert!(
            waited >= Duration::from_millis(600) && waited <= Duration::from_millis(800),
            "{waited:?}"
        );
        settle().await;
        assert_eq!(fake.watch_calls()[1].0.resource_version, "20");
        assert_eq!(r.stats.lists(), 2);
        assert_eq!(r.stats.failures(), 1);
        assert_eq!(r.stats.events(), 0);
        drop(r.stop);
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn watch_start_410_relists() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![obj("a", "1", 1)], Some("5"), None)));
        fake.list(Ok(page(vec![], Some("9"), None)));
        fake.watch_err(410);
        let mut r = run(&fake);
        assert!(matches!(r.events.recv().await.unwrap(), Event::Restarted(v) if v.len() == 1));
        assert!(matches!(r.events.recv().await.unwrap(), Event::Restarted(v) if v.is_empty()));
        assert!(r.store.is_empty());
        assert!(r.store.is_synced(), "a relist must not unsync the store");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_continue_token_restarts_the_list() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![obj("stale", "1", 1)], None, Some("c1"))));
        fake.list(Err(FakeError(410)));
        fake.list(Ok(page(vec![obj("fresh", "3", 1)], Some("3"), None)));
        let mut r = run(&fake);
        match r.events.recv().await.unwrap() {
            Event::Restarted(all) => assert_eq!(names(&all), vec!["fresh"]),
            other => panic!("expected Restarted, got {other:?}"),
        }
        let tokens: Vec<_> = fake
            .list_calls()
            .into_iter()
            .map(|(p, _)| p.continue_token)
            .collect();
        assert_eq!(tokens, vec![None, Some("c1".into()), None]);
    }

    #[tokio::test(start_paused = true)]
    async fn watch_errors_back_off_doubling() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![], Some("1"), None)));
        for _ in 0..4 {
            fake.watch_err(500);
        }
        let _w = fake.watch_ok();
        let r = run(&fake);
        r.store.wait_synced().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let at: Vec<_> = fake.watch_calls().into_iter().map(|(_, t)| t).collect();
        assert_eq!(at.len(), 5);
        // 0.8, 1.6, 3.2, 6.4 s, each shortened by at most a quarter.
        for (i, base) in [0.8, 1.6, 3.2, 6.4].into_iter().enumerate() {
            let gap = (at[i + 1] - at[i]).as_secs_f64();
            assert!(
                gap <= base + 1e-3 && gap >= base * 0.75 - 1e-3,
                "gap {i}: {gap} for {base}"
            );
        }
        // Every retry started from the same version: no relist for a plain error.
        assert_eq!(fake.list_calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_resets_after_two_minutes_of_health() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![], Some("1"), None)));
        fake.watch_err(500);
        fake.watch_err(500);
        let w = fake.watch_ok();
        let _w2 = fake.watch_ok();
        let r = run(&fake);
        r.store.wait_synced().await;
        tokio::time::sleep(Duration::from_secs(130)).await;
        assert_eq!(fake.watch_calls().len(), 3);
        let failed_at = Instant::now();
        w.send(Err(FakeError(500))).unwrap();
        settle().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let calls = fake.watch_calls();
        assert_eq!(calls.len(), 4);
        // Without the reset this would be 3.2 s (minus jitter).
        let gap = calls[3].1 - failed_at;
        assert!(gap <= Duration::from_millis(801), "{gap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_stream_is_abandoned_after_timeout_and_slack() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![], Some("4"), None)));
        let _silent = fake.watch_ok();
        let _w2 = fake.watch_ok();
        let r = run(&fake);
        r.store.wait_synced().await;
        settle().await;
        let opened = fake.watch_calls()[0].1;
        tokio::time::sleep(Duration::from_secs(400)).await;
        let calls = fake.watch_calls();
        assert_eq!(calls.len(), 2);
        let gap = calls[1].1 - opened;
        let idle = Duration::from_secs(u64::from(WATCH_TIMEOUT_SECS)) + IDLE_SLACK;
        assert!(
            gap >= idle && gap <= idle + Duration::from_millis(800),
            "{gap:?}"
        );
        assert_eq!(calls[1].0.resource_version, "4");
    }

    #[tokio::test(start_paused = true)]
    async fn streams_closed_at_once_are_backed_off() {
        let fake = Fake::default();
        fake.list(Ok(page(vec![], Some("4"), None)));
        for _ in 0..3 {
            drop(fake.watch_ok());
        }
        let r = run(&fake);
        r.store.wait_synced().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let at: Vec<_> = fake.watch_calls().into_iter().map(|(_, t)| t).collect();
        assert_eq!(at.len(), 4);
        assert!(
            at[1] - at[0] >= Duration::from_millis(600),
            "hot loop: {at:?}"
        );
        assert!(
            at[2] - at[1] >= Duration::from_millis(1200),
            "hot loop: {at:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn projection_none_drops_the_object_from_the_store() {
        let fake = Fake::default();
        let mut nameless = obj("x", "1", 5);
        nameless.metadata.name = None;
        fake.list(Ok(page(
            vec![obj("a", "1", 1), obj("z", "1", 0), nameless],
            Some("1"),
            None,
        )));
        let w = fake.watch_ok();
        let mut r = run(&fake);
        r.events.recv().await.unwrap();
        assert_eq!(stored(&r.store), vec![("a".into(), 1)]);
        w.send(Ok(WatchEvent::Modified(obj("a", "2", 0)))).unwrap();
        // The caller still hears about it: the object changed.
        assert!(matches!(r.events.recv().await.unwrap(), Event::Applied(_)));
        assert!(r.store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_reflector_even_while_backing_off() {
        let fake = Fake::default();
        fake.list(Err(FakeError(500)));
        let r = run(&fake);
        settle().await;
        assert_eq!(fake.list_calls().len(), 1);
        r.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_millis(10), r.task)
            .await
            .expect("reflector ignored shutdown")
            .unwrap();
        assert!(!r.store.is_synced());
    }
}
