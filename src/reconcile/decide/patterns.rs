//! The two ways a CR names namespaces, compiled and checked before any selection:
//! name patterns (literal names and globs) and the shape of a label selector.
//!
//! Namespace patterns are compiled once per spec ([`NamePatterns`]): literal names go in
//! a hash set, globs into [`Glob`], a bit-parallel automaton that reads each name once.
//! A CR may hold hundreds of patterns and a cluster thousands of namespaces, and every
//! reconcile selects afresh, so selection must stay linear in its input whatever the
//! patterns (a backtracking matcher is quadratic per pair on `*aaaa…b`).

use std::collections::HashSet;

use super::spec::LabelSelector;
use crate::reconcile::vocab::shown;

/// Most wildcards (`*` and `?`) one pattern may hold. The matcher is linear whatever the
/// count; the bound keeps patterns readable and their intent reviewable.
pub(crate) const MAX_WILDCARDS: usize = 8;
/// Most patterns with a wildcard in one list (literal names cost a hash lookup each, so
/// they are bounded only by the CRD's `maxItems`).
pub(crate) const MAX_GLOBS: usize = 32;

/// Why a pattern cannot be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// Not a namespace name with optional `*`/`?`, or longer than a namespace name.
    Invalid(String),
    /// More than [`MAX_WILDCARDS`] wildcards.
    TooManyWildcards(String),
    /// More than [`MAX_GLOBS`] patterns with wildcards in one list.
    TooManyGlobs(usize),
}

/// A list of namespace names and globs, compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NamePatterns {
    literals: HashSet<String>,
    globs: Vec<Glob>,
    /// The patterns as written, deduplicated, in their first order (for `missing`).
    written: Vec<String>,
}

// === impl NamePatterns ===

impl NamePatterns {
    pub(crate) fn compile(patterns: &[String]) -> Result<NamePatterns, PatternError> {
        let mut out = NamePatterns::default();
        for p in patterns {
            if out.written.contains(p) {
                continue;
            }
            if is_literal(p) {
                if !is_namespace_pattern(p) {
                    return Err(PatternError::Invalid(p.clone()));
                }
                out.literals.insert(p.clone());
            } else {
                out.globs.push(Glob::compile(p)?);
                if out.globs.len() > MAX_GLOBS {
                    return Err(PatternError::TooManyGlobs(out.globs.len()));
                }
            }
            out.written.push(p.clone());
        }
        Ok(out)
    }

    /// Whether `name` is listed or matches a glob.
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.literals.contains(name) || self.globs.iter().any(|g| g.matches(name))
    }

    /// Whether `name` is listed literally.
    pub(crate) fn lists(&self, name: &str) -> bool {
        self.literals.contains(name)
    }

    /// The literal names, in the order written.
    pub(crate) fn literals(&self) -> impl Iterator<Item = &str> {
        self.written
            .iter()
            .filter(|p| is_literal(p))
            .map(String::as_str)
    }
}

fn is_literal(p: &str) -> bool {
    !p.contains(['*', '?'])
}

/// A namespace name, optionally with `*`/`?` globs.
fn is_namespace_pattern(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'*' | b'?')
        })
}

/// A shell-style glob (`*` any run, `?` one character) over namespace names, as a
/// bit-parallel NFA: bit `i` of the state means "the first `i` pattern characters match
/// what was read". Each name character costs a few word operations, so a match is linear
/// in the name and independent of the pattern's shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Glob {
    /// Positions whose pattern character accepts byte `b` (a literal `b`, or `?`).
    accepts: Box<[u64; 128]>,
    /// Positions holding `*`.
    stars: u64,
    /// The bit reached when the whole pattern matched.
    accept: u64,
}

// === impl Glob ===

impl Glob {
    pub(crate) fn compile(pattern: &str) -> Result<Glob, PatternError> {
        if !is_namespace_pattern(pattern) {
            return Err(PatternError::Invalid(pattern.to_string()));
        }
        if pattern.bytes().filter(|b| matches!(b, b'*' | b'?')).count() > MAX_WILDCARDS {
            return Err(PatternError::TooManyWildcards(pattern.to_string()));
        }
        // `**` matches what `*` matches; collapsing runs lets one shift close over stars.
        let mut p: Vec<u8> = Vec::with_capacity(pattern.len());
        for b in pattern.bytes() {
            if !(b == b'*' && p.last() == Some(&b'*')) {
                p.push(b);
            }
        }
        // At most 63 characters: positions 0..=63 fit in a u64.
        let mut accepts = Box::new([0u64; 128]);
        let mut stars = 0u64;
        for (i, &c) in p.iter().enumerate() {
            let bit = 1u64 << i;
            match c {
                b'*' => stars |= bit,
                b'?' => accepts.iter_mut().for_each(|m| *m |= bit),
                _ => accepts[usize::from(c & 0x7f)] |= bit,
            }
        }
        Ok(Glob {
            accepts,
            stars,
            accept: 1u64 << p.len(),
        })
    }

    /// A star matches the empty run: being before a `*` means being after it too.
    fn close(&self, state: u64) -> u64 {
        state | ((state & self.stars) << 1)
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        let mut state = self.close(1);
        for b in name.bytes() {
            if !b.is_ascii() {
                return false;
            }
            let step = ((state & self.accepts[usize::from(b)]) << 1) | (state & self.stars);
            state = self.close(step);
            if state == 0 {
                return false;
            }
        }
        state & self.accept != 0
    }
}

/// Shell-style glob with `*` (any run) and `?` (one character); any pattern that does
/// not compile matches nothing.
#[cfg(test)]
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    Glob::compile(pattern).is_ok_and(|g| g.matches(name))
}

/// Most `matchLabels` entries and `matchExpressions` terms (as the CRD's bounds).
pub(crate) const MAX_SELECTOR_TERMS: usize = 32;
/// Most `values` in one term (as the CRD's `maxItems`).
pub(crate) const MAX_SELECTOR_VALUES: usize = 64;

/// Why a label selector is rejected. Keys and unknown operators are held as
/// [`shown`](crate::reconcile::vocab::shown) made them, so neither the message nor
/// `Debug` can carry a credential pasted into a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SelectorError {
    /// More than [`MAX_SELECTOR_TERMS`] matchLabels or matchExpressions.
    TooManyTerms,
    /// A term with more than [`MAX_SELECTOR_VALUES`] values.
    TooManyValues { key: String },
    /// `In` or `NotIn` without a value.
    NeedsValues { operator: String, key: String },
    /// `Exists` or `DoesNotExist` with values.
    TakesNoValues { operator: String, key: String },
    /// An operator the API server does not know.
    UnknownOperator { operator: String },
}

impl std::fmt::Display for SelectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectorError::TooManyTerms => write!(
                f,
                "at most {MAX_SELECTOR_TERMS} matchLabels and {MAX_SELECTOR_TERMS} matchExpressions"
            ),
            SelectorError::TooManyValues { key } => {
                write!(f, "key {key} has more than {MAX_SELECTOR_VALUES} values")
            }
            SelectorError::NeedsValues { operator, key } => write!(
                f,
                "operator {operator} on key {key} needs at least one value"
            ),
            SelectorError::TakesNoValues { operator, key } => {
                write!(f, "operator {operator} on key {key} takes no values")
            }
            SelectorError::UnknownOperator { operator } => write!(
                f,
                "unknown operator {operator} (In, NotIn, Exists, DoesNotExist)"
            ),
        }
    }
}

impl std::error::Error for SelectorError {}

/// Rejects operators and value lists the API server would reject, and selectors larger
/// than the CRD admits (each namespace event evaluates every term).
pub(crate) fn check_selector(sel: &LabelSelector) -> Result<(), SelectorError> {
    if sel.match_labels.len() > MAX_SELECTOR_TERMS
        || sel.match_expressions.len() > MAX_SELECTOR_TERMS
    {
        return Err(SelectorError::TooManyTerms);
    }
    for req in &sel.match_expressions {
        if req.values.len() > MAX_SELECTOR_VALUES {
            return Err(SelectorError::TooManyValues {
                key: shown(&req.key),
            });
        }
        let (operator, key) = (req.operator.clone(), shown(&req.key));
        match req.operator.as_str() {
            "In" | "NotIn" if req.values.is_empty() => {
                return Err(SelectorError::NeedsValues { operator, key })
            }
            "Exists" | "DoesNotExist" if !req.values.is_empty() => {
                return Err(SelectorError::TakesNoValues { operator, key })
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(SelectorError::UnknownOperator {
                    operator: shown(other),
                })
            }
        }
    }
    Ok(())
}
