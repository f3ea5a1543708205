//! The request log: every API call with its verb classification, so tests can count calls
//! and derive the RBAC rules the operator really needs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// One served request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The URL path, without the query.
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection;
    /// "" for non-resource paths.
    pub verb: String,
    /// The API group ("" for core).
    pub group: String,
    /// The resource's plural ("" for non-resource paths).
    pub resource: String,
    /// "status" for /status writes.
    pub subresource: String,
    /// `None` for cluster-scoped and all-namespace requests.
    pub namespace: Option<String>,
    /// `None` for collection requests (list, watch, create).
    pub name: Option<String>,
    /// The HTTP status answered.
    pub code: u16,
}

/// A bounded log of requests (oldest dropped first), each with the wall-clock time its
/// answer was ready: tests compare it with times the operator wrote (an `expires-at`
/// annotation) and with what the harness saw, without waiting on their own caches.
pub(crate) struct RequestLog {
    entries: Mutex<VecDeque<(SystemTime, RequestRecord)>>,
    capacity: usize,
}

// === impl RequestLog ===

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        RequestLog {
            entries: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(SystemTime, RequestRecord)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, r: RequestRecord) {
        let mut e = self.lock();
        if e.len() >= self.capacity {
            e.pop_front();
        }
        e.push_back((SystemTime::now(), r));
    }

    pub(crate) fn all(&self) -> Vec<RequestRecord> {
        self.lock().iter().map(|(_, r)| r.clone()).collect()
    }

    /// Every request with the time its answer was ready, oldest first.
    pub(crate) fn timed(&self) -> Vec<(SystemTime, RequestRecord)> {
        self.lock().iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Requests per (verb, resource).
    pub(crate) fn counts(&self) -> BTreeMap<(String, String), u64> {
        let mut m = BTreeMap::new();
        for (_, r) in self.lock().iter().filter(|(_, r)| !r.verb.is_empty()) {
            *m.entry((r.verb.clone(), r.resource.clone())).or_insert(0) += 1;
        }
        m
    }

    /// Every distinct (verb, group, resource[/subresource], namespaced?) used: the RBAC
    /// rules a client needs.
    pub(crate) fn rbac_used(&self) -> BTreeSet<RbacUse> {
        self.lock()
            .iter()
            .map(|(_, r)| r)
            .filter(|r| !r.verb.is_empty())
            .map(|r| RbacUse {
                verb: r.verb.clone(),
                group: r.group.clone(),
                resource: if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                },
                namespaced: r.namespace.is_some(),
            })
            .collect()
    }
}

/// One RBAC permission a client exercised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RbacUse {
    /// The Kubernetes verb.
    pub verb: String,
    /// The API group ("" for core).
    pub group: String,
    /// The plural, with `/subresource` when one was used.
    pub resource: String,
    /// Used in a namespace (a Role suffices) rather than cluster-wide.
    pub namespaced: bool,
}
