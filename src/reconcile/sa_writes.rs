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
use std::time::Duration;

use tokio::time::Instant;

use super::state::SaView;

/// How long a write is remembered: far longer than a watch event takes to arrive. A
/// background sweep then forgets it, so a quiet operator holds none of this.
pub const REMEMBER_FOR: Duration = Duration::from_secs(10);

type Key = (String, String);

/// Shared by every reconcile of one writer. Cheap to clone.
#[derive(Clone, Default)]
pub struct SaWrites {
    inner: Arc<Mutex<Writes>>,
}

#[derive(Default)]
struct Writes {
    entries: HashMap<Key, Entry>,
    /// A sweep task is scheduled.
    sweeping: bool,
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
            .field("entries", &self.map().entries.len())
            .finish()
    }
}

// === impl SaWrites ===

impl SaWrites {
    fn map(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock serializing this process's edits of one ServiceAccount.
    pub fn lock_for(&self, namespace: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.map()
            .entries
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .lock
            .clone()
    }

    /// Our newer view of `seen`, if `seen` is a version one of our writes replaced.
    pub fn newer_than(&self, seen: &SaView) -> Option<SaView> {
        let map = self.map();
        let entry = map
            .entries
            .get(&(seen.namespace.clone(), seen.name.clone()))?;
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
        if !map.sweeping {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                map.sweeping = true;
                runtime.spawn(self.clone().sweep_until_empty());
            }
        }
        let entry = map
            .entries
            .entry((after.namespace.clone(), after.name.clone()))
            .or_default();
        if entry.written_at.is_none_or(|t| t.elapsed() >= REMEMBER_FOR) {
            entry.superseded.clear();
        }
        entry.superseded.push(before.to_string());
        entry.written_at = Some(Instant::now());
        entry.latest = Some(after);
    }

    /// Forgets expired writes (and unused locks) every [`REMEMBER_FOR`] until none is left.
    async fn sweep_until_empty(self) {
        loop {
            tokio::time::sleep(REMEMBER_FOR).await;
            if self.sweep() == 0 {
                return;
            }
        }
    }

    /// Drops expired entries nobody holds a lock of; returns how many remain. Clears the
    /// sweeping flag under the same lock when none remain, so a concurrent `record`
    /// schedules the next sweep.
    fn sweep(&self) -> usize {
        let mut map = self.map();
        map.entries.retain(|_, e| {
            e.written_at.is_some_and(|t| t.elapsed() < REMEMBER_FOR)
                || Arc::strong_count(&e.lock) > 1
        });
        if map.entries.is_empty() {
            map.entries = HashMap::new();
            map.sweeping = false;
        } else {
            map.entries.shrink_to_fit();
        }
        map.entries.len()
    }

    pub fn len(&self) -> usize {
        self.map().entries.len()
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
        use crate::reconcile::plan::SaEdit;
        use crate::reconcile::writes::Writer;
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
        let executor = Writer::new(client);
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

    #[tokio::test(start_paused = true)]
    async fn a_quiet_operator_forgets_every_write() {
        let w = SaWrites::default();
        w.record("1", view("2", &["a"]));
        assert_eq!(w.len(), 1);
        tokio::time::sleep(REMEMBER_FOR / 2).await;
        assert_eq!(w.newer_than(&view("1", &[])), Some(view("2", &["a"])));
        tokio::time::sleep(REMEMBER_FOR * 2).await;
        assert!(w.is_empty());
        // And a later write schedules the next sweep.
        w.record("5", view("6", &["a"]));
        tokio::time::sleep(REMEMBER_FOR * 3).await;
        assert!(w.is_empty());
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
