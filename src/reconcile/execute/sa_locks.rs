//! One edit of a ServiceAccount at a time in this process.
//!
//! Several ECRPullSecrets often edit the same ServiceAccount (`default` in every
//! namespace), each planning from the same cached view. Unserialized, every CR after the
//! first sends a JSON patch whose `test` on resourceVersion fails, re-reads and retries:
//! three requests instead of one. Serialized, each edit starts from the view the previous
//! one wrote (the cache holds our writes ahead of the watch), so each costs one request.
//! The `test` op still guards every write; this only makes the first guess right.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

type Key = (String, String);

/// The locks, held weakly: an entry lives only while an edit holds or awaits it, so a
/// quiet operator holds none. Cheap to clone; clones share the locks.
#[derive(Clone, Debug, Default)]
pub(crate) struct SaLocks {
    locks: Arc<Mutex<HashMap<Key, Weak<tokio::sync::Mutex<()>>>>>,
}

// === impl SaLocks ===

impl SaLocks {
    /// The lock serializing this process's edits of one ServiceAccount.
    pub(crate) fn lock_for(&self, namespace: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        // Dead entries go whenever the map has doubled since the last clean-up.
        if locks.len() >= 64
            && locks.values().filter(|w| w.strong_count() == 0).count() * 2 >= locks.len()
        {
            locks.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key, Arc::downgrade(&lock));
        lock
    }

    /// Locks alive now (held or awaited).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        let locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn edits_of_one_service_account_share_a_lock_and_others_do_not() {
        let locks = SaLocks::default();
        let a = locks.lock_for("ns", "default");
        let _held = a.lock().await;
        assert!(locks.lock_for("ns", "default").try_lock().is_err());
        assert!(locks.lock_for("ns", "builder").try_lock().is_ok());
    }

    #[test]
    fn a_quiet_operator_holds_no_lock() {
        let locks = SaLocks::default();
        for i in 0..1000 {
            let _l = locks.lock_for("ns", &format!("sa{i}"));
        }
        assert_eq!(locks.live(), 0);
        assert!(
            locks.locks.lock().unwrap().len() < 200,
            "dead entries are cleaned up"
        );
    }
}
