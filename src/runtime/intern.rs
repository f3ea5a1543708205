//! Shared strings for the caches' projections. Thousands of cached objects repeat a
//! handful of values (the Secret name a CR writes in every namespace, its owner and uid,
//! the registries, `default`, label keys and values); each is kept once and pointed at.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide table. A value lives while anything points at it: entries only the
/// table holds are dropped whenever the table has doubled since it was last swept.
struct Table {
    strings: HashSet<Arc<str>>,
    swept_at: usize,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Mutex::new(Table {
            strings: HashSet::new(),
            swept_at: 64,
        })
    })
}

/// The one shared copy of `s`.
pub(crate) fn intern(s: &str) -> Arc<str> {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shared) = t.strings.get(s) {
        return Arc::clone(shared);
    }
    if t.strings.len() >= 2 * t.swept_at {
        t.strings.retain(|s| Arc::strong_count(s) > 1);
        t.swept_at = t.strings.len().max(64);
    }
    let shared: Arc<str> = Arc::from(s);
    t.strings.insert(Arc::clone(&shared));
    shared
}

/// Strings the table holds now.
#[cfg(test)]
fn interned() -> usize {
    table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .strings
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_allocation_and_unused_ones_go() {
        let a = intern("intern-test-a");
        let b = intern(&String::from("intern-test-a"));
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        // Enough fresh strings to force a sweep: the unused one is gone, live ones stay.
        let live: Vec<_> = (0..300)
            .map(|i| intern(&format!("intern-test-{i}")))
            .collect();
        drop(live);
        let keep = intern("intern-test-keep");
        for i in 0..1000 {
            let _ = intern(&format!("intern-test-churn-{i}"));
        }
        assert!(
            interned() < 1000,
            "nobody's strings were not swept: {}",
            interned()
        );
        assert!(Arc::ptr_eq(&keep, &intern("intern-test-keep")));
    }
}
