//! Watch streams: newline-delimited JSON events over a chunked (or h2) body, with history
//! replay, selector-aware event types, bookmarks, server-side timeout and forced drops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::kinds::KindSpec;
use super::lag::LagControl;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, StoredEvent, WatchStart};

/// What one watcher asked for.
#[derive(Debug, Clone)]
pub(crate) struct WatchFilter {
    pub kind: usize,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

// === impl WatchFilter ===

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event this watcher sees for a store event, if any: an object modified into the
    /// selector is ADDED, one modified out of it is DELETED (real cacher semantics).
    pub(crate) fn project(&self, ev: &StoredEvent) -> Option<EventType> {
        if ev.kind != self.kind {
            return None;
        }
        if let Some(ns) = &self.namespace {
            if &ev.namespace != ns {
                return None;
            }
        }
        let now = self.matches(&ev.object);
        let before = ev.old.as_deref().map(|o| self.matches(o));
        match ev.etype {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || before == Some(true)).then_some(EventType::Deleted),
            EventType::Modified => match (before.unwrap_or(false), now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        }
    }
}

/// How a watch behaves over time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchTiming {
    pub bookmarks: Option<Duration>,
    pub timeout: Duration,
    /// `sendInitialEvents=true`: after the initial ADDED events, a BOOKMARK annotated
    /// `k8s.io/initial-events-end: "true"`.
    pub initial_events_end: bool,
}

pub(crate) fn encode_event(etype: &str, obj: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(etype.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, obj);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

pub(crate) fn error_event(err: &ApiError) -> Bytes {
    encode_event("ERROR", &err.to_value())
}

fn bookmark(spec: &KindSpec, rv: u64) -> Bytes {
    encode_event(
        "BOOKMARK",
        &json!({"kind": spec.kind, "apiVersion": spec.api_version(), "metadata": {"resourceVersion": rv.to_string()}}),
    )
}

fn initial_events_end(spec: &KindSpec, rv: u64) -> Bytes {
    encode_event(
        "BOOKMARK",
        &json!({"kind": spec.kind, "apiVersion": spec.api_version(), "metadata": {
            "resourceVersion": rv.to_string(),
            "annotations": {"k8s.io/initial-events-end": "true"}
        }}),
    )
}

/// Runs one watch until timeout, drop, lag or client disconnect, writing into `out`.
/// Events trail their commits as `lag` says (see [`super::lag`]).
pub(crate) async fn run_watch(
    spec: KindSpec,
    filter: WatchFilter,
    start: WatchStart,
    timing: WatchTiming,
    mut drops: watch::Receiver<u64>,
    lag: Arc<LagControl>,
    out: mpsc::Sender<Bytes>,
) {
    let WatchStart {
        initial,
        mut live,
        current_rv,
    } = start;
    let mut last_rv = current_rv;
    // `drops` was subscribed before the watch started: a drop during a lagged replay
    // ends the watch like any other.
    let replayed = tokio::select! {
        done = replay(&filter, &initial, &lag, &out) => done,
        _ = drops.changed() => false,
    };
    if !replayed {
        return;
    }
    if timing.initial_events_end
        && out
            .send(initial_events_end(&spec, current_rv))
            .await
            .is_err()
    {
        return;
    }
    let deadline = tokio::time::sleep(timing.timeout);
    tokio::pin!(deadline);
    let period = timing.bookmarks.unwrap_or(Duration::from_secs(3600));
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    // Received, not yet due: (when due, event). Draining the broadcast into it at once
    // keeps a long lag from overflowing the channel.
    let mut pending: VecDeque<(Instant, Arc<StoredEvent>)> = VecDeque::new();
    let mut last_due = Instant::now();
    loop {
        let next_due = pending.front().map(|(t, _)| *t);
        tokio::select! {
            _ = &mut deadline => return,
            _ = drops.changed() => return,
            _ = out.closed() => return,
            _ = ticks.tick(), if timing.bookmarks.is_some() => {
                // A stalled watch is quiet; a bookmark never runs ahead of delivered events.
                if lag.stalled_until(Instant::now()).is_none()
                    && out.send(bookmark(&spec, last_rv)).await.is_err()
                {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                if !deliver_due(&filter, &lag, &mut pending, &mut last_rv, &out).await {
                    return;
                }
            }
            ev = live.recv() => match ev {
                Ok(ev) => {
                    // Subscribed under the store lock: every live event is newer than the
                    // replayed ones, so nothing repeats.
                    if !lag.is_active() && pending.is_empty() {
                        last_rv = last_rv.max(ev.rv);
                        if !send_projected(&filter, &ev, &out).await {
                            return;
                        }
                        continue;
                    }
                    // In order: never before an earlier event.
                    let due = lag.due(ev.committed).max(last_due);
                    last_due = due;
                    pending.push_back((due, ev));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = out.send(error_event(&ApiError::too_old_resource_version(last_rv, last_rv))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Sends the replayed events the filter lets through, each no earlier than its lag says.
/// False when the client is gone.
async fn replay(
    filter: &WatchFilter,
    initial: &[Arc<StoredEvent>],
    lag: &LagControl,
    out: &mpsc::Sender<Bytes>,
) -> bool {
    for ev in initial {
        if let Some(t) = filter.project(ev) {
            if lag.is_active() {
                wait_until_due(lag, lag.due(ev.committed)).await;
            }
            if out
                .send(encode_event(t.as_str(), &ev.object))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// Sends every pending event now due, in order, after any stall. False when the client
/// is gone.
async fn deliver_due(
    filter: &WatchFilter,
    lag: &LagControl,
    pending: &mut VecDeque<(Instant, Arc<StoredEvent>)>,
    last_rv: &mut u64,
    out: &mpsc::Sender<Bytes>,
) -> bool {
    let now = Instant::now();
    if let Some(until) = lag.stalled_until(now) {
        wait_until_due(lag, until).await;
    }
    while let Some((due, ev)) = pending.front().cloned() {
        if due > Instant::now() {
            break;
        }
        pending.pop_front();
        *last_rv = (*last_rv).max(ev.rv);
        if !send_projected(filter, &ev, out).await {
            return false;
        }
    }
    true
}

/// Sends the event as this watcher sees it, if it sees it. False when the client is gone.
async fn send_projected(filter: &WatchFilter, ev: &StoredEvent, out: &mpsc::Sender<Bytes>) -> bool {
    match filter.project(ev) {
        Some(t) => out.send(encode_event(t.as_str(), &ev.object)).await.is_ok(),
        None => true,
    }
}

/// Sleeps until `due`, and past any stall that covers it.
async fn wait_until_due(lag: &LagControl, mut due: Instant) {
    loop {
        tokio::time::sleep_until(due).await;
        match lag.stalled_until(Instant::now()) {
            Some(until) => due = until,
            None => return,
        }
    }
}

/// A response body fed by a channel: each message is one frame (one event).
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelBody { rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// Spawns the watch task and returns its body.
pub(crate) fn spawn_watch(
    spec: KindSpec,
    filter: WatchFilter,
    start: WatchStart,
    timing: WatchTiming,
    drops: watch::Receiver<u64>,
    lag: Arc<LagControl>,
    first: Option<Bytes>,
) -> ChannelBody {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if let Some(b) = first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        run_watch(spec, filter, start, timing, drops, lag, tx).await;
    });
    ChannelBody::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::store::StoredEvent;
    use serde_json::json;
    use std::sync::Arc;

    fn obj(app: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "a", "namespace": "n", "labels": {"app": app}}}))
    }

    fn event(etype: EventType, old: Option<&str>, new: &str) -> StoredEvent {
        StoredEvent {
            rv: 2,
            committed: tokio::time::Instant::now(),
            kind: 0,
            namespace: "n".into(),
            etype,
            old: old.map(obj),
            object: obj(new),
        }
    }

    #[test]
    fn selector_watch_projects_transitions_like_the_cacher() {
        let f = WatchFilter {
            kind: 0,
            namespace: Some("n".into()),
            labels: LabelSelector::parse("app=web").unwrap(),
            fields: FieldSelector::default(),
        };
        assert_eq!(
            f.project(&event(EventType::Added, None, "web")),
            Some(EventType::Added)
        );
        assert_eq!(f.project(&event(EventType::Added, None, "db")), None);
        assert_eq!(
            f.project(&event(EventType::Modified, Some("web"), "web")),
            Some(EventType::Modified)
        );
        assert_eq!(
            f.project(&event(EventType::Modified, Some("db"), "web")),
            Some(EventType::Added)
        );
        assert_eq!(
            f.project(&event(EventType::Modified, Some("web"), "db")),
            Some(EventType::Deleted)
        );
        assert_eq!(
            f.project(&event(EventType::Modified, Some("db"), "db")),
            None
        );
        assert_eq!(
            f.project(&event(EventType::Deleted, Some("web"), "web")),
            Some(EventType::Deleted)
        );
        let mut other_ns = event(EventType::Added, None, "web");
        other_ns.namespace = "m".into();
        assert_eq!(f.project(&other_ns), None);
    }
}
