//! Our own recent ServiceAccount writes, ahead of the watch cache.
//!
//! Several ECRPullSecrets often edit the same ServiceAccount (`default` in every
//! namespace). Each plans from the watch cache, which lags our own writes by a few
//! milliseconds, so without this every CR after the first sends a patch whose `test` on
//! resourceVersion fails (422), then re-reads and retries: three requests instead of one,
//! and with many CRs at once the retries run out and the reconcile backs off.
//!
//! This keeps, per ServiceAccount, a lock that serializes this process's edits and the view
//! our last write produced (from the patch answer), with the resourceVersions it
//! superseded. An edit planned from one of those stale versions starts from our newer view
//! instead. It is only a better first guess: the `test` op still guards every write, so a
//! wrong guess costs what it cost before (422, re-read, retry), never a lost entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::SaView;

/// How long a write is remembered: far longer than a watch event takes to arrive.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30);

/// Entries beyond this trigger a sweep of the expired ones on the next write.
const SWEEP_ABOVE: usize = 256;

type Key = (String, String);

/// Shared by every reconcile of one executor. Cheap to clone.
#[derive(Clone, Default)]
pub struct SaWrites {
    inner: Arc<Mutex<HashMap<Key, Entry>>>,
}

#[derive(Default)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// resourceVersions our writes replaced (the cache may still hold any of them).
    superseded: Vec<String>,
    latest: Option<SaView>,
    written_at: Option<Instant>,
}

impl std::fmt::Debug for SaWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaWrites")
            .field("entries", &self.map().len())
            .finish()
    }
}

// === impl SaWrites ===

impl SaWrites {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock serializing this process's edits of one ServiceAccount.
    pub fn lock_for(&self, namespace: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.map()
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .lock
            .clone()
    }

    /// Our newer view of `seen`, if `seen` is a version one of our writes replaced.
    pub fn newer_than(&self, seen: &SaView) -> Option<SaView> {
        let map = self.map();
        let entry = map.get(&(seen.namespace.clone(), seen.name.clone()))?;
        let fresh = entry.written_at.is_some_and(|t| t.elapsed() < REMEMBER_FOR);
        if fresh && entry.superseded.contains(&seen.resource_version) {
            entry.latest.clone()
        } else {
            None
        }
    }

    /// Records that our write replaced version `before` with `after`.
    pub fn record(&self, before: &str, after: SaView) {
        let mut map = self.map();
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, e| {
                e.written_at.is_some_and(|t| t.elapsed() < REMEMBER_FOR)
                    || Arc::strong_count(&e.lock) > 1
            });
        }
        let entry = map
            .entry((after.namespace.clone(), after.name.clone()))
            .or_default();
        if entry.written_at.is_none_or(|t| t.elapsed() >= REMEMBER_FOR) {
            entry.superseded.clear();
        }
        entry.superseded.push(before.to_string());
        entry.written_at = Some(Instant::now());
        entry.latest = Some(after);
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(rv: &str, pulls: &[&str]) -> SaView {
        SaView {
            namespace: "ns".into(),
            name: "default".into(),
            resource_version: rv.into(),
            pull_secrets: pulls.iter().map(|s| s.to_string()).collect(),
            owned: Vec::new(),
            has_annotations: true,
        }
    }

    #[test]
    fn a_version_our_write_replaced_is_answered_with_our_newer_view() {
        let w = SaWrites::default();
        w.record("1", view("2", &["a"]));
        w.record("2", view("3", &["a", "b"]));
        // The cache may still hold either replaced version.
        assert_eq!(w.newer_than(&view("1", &[])), Some(view("3", &["a", "b"])));
        assert_eq!(
            w.newer_than(&view("2", &["a"])),
            Some(view("3", &["a", "b"]))
        );
    }

    #[test]
    fn a_version_we_did_not_replace_is_left_to_the_cache() {
        let w = SaWrites::default();
        w.record("1", view("2", &["a"]));
        // Caught up, or someone else wrote since: the cache's view stands.
        assert_eq!(w.newer_than(&view("2", &["a"])), None);
        assert_eq!(w.newer_than(&view("9", &["x"])), None);
        let other = SaView {
            name: "builder".into(),
            ..view("1", &[])
        };
        assert_eq!(w.newer_than(&other), None);
    }

    /// The bench's 10-CRs case: every CR plans from the same cached ServiceAccount.
    #[tokio::test]
    async fn edits_planned_from_one_stale_view_each_take_one_request() {
        use crate::k8s::kind::SERVICE_ACCOUNTS;
        use crate::k8s::types::ServiceAccount;
        use crate::k8s::{Client, ClientConfig};
        use crate::reconcile::executor::Executor;
        use crate::reconcile::plan::SaEdit;
        use emulators::k8s::{EmulatorConfig, K8sEmulator};

        let emu = K8sEmulator::start(EmulatorConfig::default()).await.unwrap();
        emu.apply(
            "namespaces",
            serde_json::json!({"metadata": {"name": "team"}}),
        )
        .unwrap();
        let client = Client::new(ClientConfig::new(&emu.url()).unwrap()).unwrap();
        let sa: ServiceAccount = client
            .get(&SERVICE_ACCOUNTS.object(Some("team"), "default"))
            .await
            .unwrap();
        let stale = SaView::project(&sa).unwrap();
        let executor = Executor::new(client);
        emu.clear_requests();
        let edit = |secret: &str| SaEdit {
            sa: stale.clone(),
            secret: secret.to_string(),
            add: true,
        };
        let (ea, eb, ec) = (edit("a"), edit("b"), edit("c"));
        let (a, b, c) = tokio::join!(
            executor.edit_service_account(&ea),
            executor.edit_service_account(&eb),
            executor.edit_service_account(&ec),
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
        let sa = emu.get("serviceaccounts", Some("team"), "default").unwrap();
        let mut names: Vec<&str> = sa["imagePullSecrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(emu.count("patch", "serviceaccounts"), 3, "no lost test op");
        assert_eq!(emu.count("get", "serviceaccounts"), 0, "no re-read");
        emu.shutdown().await;
    }

    #[tokio::test]
    async fn edits_of_one_service_account_share_a_lock_and_others_do_not() {
        let w = SaWrites::default();
        let a = w.lock_for("ns", "default");
        let _held = a.lock().await;
        assert!(w.lock_for("ns", "default").try_lock().is_err());
        assert!(w.lock_for("ns", "builder").try_lock().is_ok());
    }
}
