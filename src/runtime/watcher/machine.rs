//! The pure state machine: `Empty -> InitPage -> InitListed -> Watching`. It decides
//! what to do with each answer (keep paging, relist, re-watch, emit) and owns no I/O and
//! no timer, so every transition is tested without a network.

use std::fmt;
use std::time::Duration;

use super::MIN_WATCH_DURATION;
use crate::k8s::types::{ApiStatus, ObjectList, Resource, WatchEvent};
use crate::runtime::store::ObjectKey;

// === the state machine ===

/// Where the watcher is. The pages of a list are handed out one by one (the driver
/// projects each as it lands, so a list of thousands of objects never sits whole in
/// memory); the store is swapped only once the last page is in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WatchState {
    /// Nothing listed: list from the first page.
    Empty,
    /// Listing: fetch the page after `continue_token`.
    InitPage { continue_token: String },
    /// Listed (or between watches): open a watch at `resource_version`.
    InitListed { resource_version: String },
    /// A watch is open: read its next event.
    Watching { resource_version: String },
}

/// The IO a state asks the driver to perform next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Io {
    List { continue_token: Option<String> },
    OpenWatch { resource_version: String },
    NextEvent,
}

/// The answer to the IO, as the machine sees it (errors already classified).
#[derive(Debug)]
pub(crate) enum Input<T, E> {
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
pub(crate) enum Event<T> {
    /// Created or modified.
    Applied(T),
    /// Deleted, as last seen by the server.
    Deleted(T),
    /// A full (re)list: these are the keys of all the objects there are (the store holds
    /// their projections).
    Restarted(Vec<ObjectKey>),
}

/// What one step produced.
#[derive(Debug)]
pub(crate) enum Output<T, E> {
    Nothing,
    Emit(Event<T>),
    /// One page of a (re)list; `last` when the list is complete, and the watch starts
    /// from its version.
    Page {
        items: Vec<T>,
        last: bool,
    },
    /// The driver should log this and back off before the next IO.
    Failed(WatcherError<E>),
}

/// Why the watcher had to retry, by phase.
#[derive(Debug)]
pub(crate) enum WatcherError<E> {
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
    WatchErrorEvent { status: ApiStatus },
    /// No event, not even a bookmark, for this long.
    WatchIdle { after: Duration },
    /// The stream ended cleanly, without an event, right after it opened.
    WatchTooShort { lasted: Duration },
}

// === impl WatcherError ===

impl<E> WatcherError<E> {
    /// Whether the failure was a 410 that forced a relist: routine (etcd compaction),
    /// logged quietly.
    pub(crate) fn is_expired(&self) -> bool {
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
fn is_gone_status(status: &ApiStatus) -> bool {
    status.code == 410 || status.reason == "Expired" || status.reason == "Gone"
}

// === impl Event ===

impl<T: Resource> Event<T> {
    /// The keys of the objects the event is about (all of them for a relist): what a
    /// controller watching these objects themselves enqueues.
    pub(crate) fn keys(&self) -> Vec<ObjectKey> {
        match self {
            Event::Applied(obj) | Event::Deleted(obj) => {
                ObjectKey::of(obj.meta()).into_iter().collect()
            }
            Event::Restarted(keys) => keys.clone(),
        }
    }
}

// === impl WatchState ===

impl WatchState {
    pub(crate) fn next_io(&self) -> Io {
        match self {
            WatchState::Empty => Io::List {
                continue_token: None,
            },
            WatchState::InitPage { continue_token, .. } => Io::List {
                continue_token: Some(continue_token.clone()),
            },
            WatchState::InitListed { resource_version } => Io::OpenWatch {
                resource_version: resource_version.clone(),
            },
            WatchState::Watching { .. } => Io::NextEvent,
        }
    }
}

/// The pure transition: given where we are and the answer to the IO this state asked
/// for, where we go and what comes out. An answer that does not fit the state (a driver
/// bug) leaves the state as it is and produces nothing.
pub(crate) fn step<T: Resource, E>(
    state: WatchState,
    input: Input<T, E>,
) -> (WatchState, Output<T, E>) {
    use Input as I;
    use WatchState as S;
    match (state, input) {
        (S::Empty | S::InitPage { .. }, I::Page(page)) => on_page(page),
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

fn on_page<T, E>(page: ObjectList<T>) -> (WatchState, Output<T, E>) {
    if let Some(token) = page.metadata.continue_token.filter(|t| !t.is_empty()) {
        let next = WatchState::InitPage {
            continue_token: token,
        };
        let items = page.items;
        return (next, Output::Page { items, last: false });
    }
    match page.metadata.resource_version.filter(|rv| !rv.is_empty()) {
        Some(resource_version) => (
            WatchState::InitListed { resource_version },
            Output::Page {
                items: page.items,
                last: true,
            },
        ),
        None => (
            WatchState::Empty,
            Output::Failed(WatcherError::ListWithoutResourceVersion),
        ),
    }
}

fn on_event<T: Resource, E>(rv: String, event: WatchEvent<T>) -> (WatchState, Output<T, E>) {
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
            let next = WatchState::Watching { resource_version };
            (next, Output::Emit(Event::Applied(obj)))
        }
        WatchEvent::Deleted(obj) => {
            let resource_version = advanced(&obj, rv);
            let next = WatchState::Watching { resource_version };
            (next, Output::Emit(Event::Deleted(obj)))
        }
        WatchEvent::Bookmark { resource_version } => {
            let resource_version = if resource_version.is_empty() {
                rv
            } else {
                resource_version
            };
            (WatchState::Watching { resource_version }, Output::Nothing)
        }
        WatchEvent::Error(status) => {
            // After an ERROR event the server ends the stream; do not wait for that.
            let next = if is_gone_status(&status) {
                WatchState::Empty
            } else {
                WatchState::InitListed {
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

#[cfg(test)]
mod tests;
