//! Whom a change wakes, shared by the watches that enqueue CRs: every CR at once, or
//! the owners of an echo after a short debounce.

use std::time::Duration;

use crate::reconcile::decide::spec::EcrPullSecret;
use crate::runtime::queue::WorkQueue;
use crate::runtime::store::Store;

/// Secret and ServiceAccount events are mostly our own writes echoing back, one per
/// object written. Enqueued after this delay, a burst of echoes costs one reconcile per
/// CR (the queue keeps the earliest pending time) instead of one per echo; a hand edit or
/// a deleted Secret is still repaired within a fraction of a second.
pub(super) const ECHO_DEBOUNCE: Duration = Duration::from_millis(250);

/// Enqueues every CR (cheap: the queue collapses dirty keys, and a reconcile that finds
/// nothing to change writes nothing).
pub(crate) fn enqueue_all(queue: &WorkQueue<String>, crs: &Store<EcrPullSecret>) {
    for key in crs.keys() {
        queue.add(key.name.to_string());
    }
}
