//! Ordering resourceVersions, as KEP-5504 (stable in Kubernetes 1.35) allows: two
//! versions of objects of one resource compare as decimal integers. A server whose
//! versions are not such integers (an aggregated API, say) keeps them opaque, and they
//! are compared for equality only.

use std::cmp::Ordering;

/// How `a` orders against `b`; `None` when either is not a comparable version (empty,
/// zero, a leading zero, or anything but digits). Integers of any length compare, as in
/// apimachinery's `CompareResourceVersion`: by length, then digit by digit.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    if !comparable(a) || !comparable(b) {
        return None;
    }
    Some(a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

/// Whether `a` is known to be later than `b` (never, when either is opaque).
pub(crate) fn later(a: &str, b: &str) -> bool {
    compare(a, b) == Some(Ordering::Greater)
}

/// Whether the watch has shown `seen`, a version at least as recent as `ours`: equal,
/// or later where versions compare.
pub(crate) fn caught_up(seen: &str, ours: &str) -> bool {
    seen == ours || later(seen, ours)
}

/// A positive decimal integer without a leading zero.
fn comparable(v: &str) -> bool {
    !v.is_empty() && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_compare_by_value_whatever_their_length() {
        assert_eq!(compare("9", "10"), Some(Ordering::Less));
        assert_eq!(compare("10", "9"), Some(Ordering::Greater));
        assert_eq!(compare("123", "123"), Some(Ordering::Equal));
        assert_eq!(compare("124", "123"), Some(Ordering::Greater));
        let huge = "184467440737095516150000";
        assert_eq!(
            compare(huge, "18446744073709551615"),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn anything_else_is_opaque() {
        for odd in ["", "0", "07", "12a", "-3", " 5", "abc"] {
            assert_eq!(compare(odd, "5"), None, "{odd:?}");
            assert_eq!(compare("5", odd), None, "{odd:?}");
        }
    }

    #[test]
    fn caught_up_is_equal_or_later_and_only_equal_when_opaque() {
        assert!(caught_up("7", "7"));
        assert!(caught_up("8", "7"));
        assert!(!caught_up("6", "7"));
        assert!(caught_up("x7", "x7"));
        assert!(!caught_up("x8", "x7"));
        assert!(later("10", "9") && !later("9", "10") && !later("9", "9"));
        assert!(!later("x8", "x7"));
    }
}
