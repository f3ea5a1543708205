//! Identifiers as the caches keep them, without a heap allocation of their own in the
//! forms the API server hands out: a resourceVersion inline, a uid (a UUID) as its 16
//! bytes. Each cached Secret holds one of each, and under a lagging watch a cache holds
//! two projections of every Secret for a moment: a `String` apiece cost 24 bytes plus
//! an allocation of 32 or 48.

use std::fmt;

/// The longest string kept inline.
const INLINE: usize = 22;

/// A short string: inline up to 22 bytes (a resourceVersion is an integer of up to 20
/// digits), on the heap beyond. 24 bytes either way.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ShortStr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

// === impl ShortStr ===

impl ShortStr {
    pub(crate) fn new(s: &str) -> ShortStr {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            // `len` fits: at most INLINE.
            ShortStr::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            ShortStr::Heap(s.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole, so valid UTF-8 up to `len`.
            ShortStr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ShortStr::Heap(s) => s,
        }
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        ShortStr::new(s)
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's uid: a UUID in its canonical lowercase form is kept as its 16 bytes and
/// written back identically; anything else (an emulator's, a test's) as given.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Uid {
    Uuid([u8; 16]),
    Other(ShortStr),
}

// === impl Uid ===

impl Uid {
    pub(crate) fn new(s: &str) -> Uid {
        parse_uuid(s).map_or_else(|| Uid::Other(ShortStr::new(s)), Uid::Uuid)
    }
}

impl From<&str> for Uid {
    fn from(s: &str) -> Self {
        Uid::new(s)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Other(s) => f.write_str(s),
            Uid::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// The 16 bytes of `s` when it is a canonical UUID: 8-4-4-4-12 lowercase hex digits.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    let mut hex = b.iter().copied().filter(|&c| c != b'-');
    for byte in &mut out {
        let (hi, lo) = (digit(hex.next()?)?, digit(hex.next()?)?);
        *byte = hi << 4 | lo;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_read_back_as_given_inline_or_not() {
        for s in [
            "",
            "7",
            "12345678901234567890",
            "a".repeat(22).as_str(),
            "b".repeat(23).as_str(),
            "ünï",
        ] {
            let short = ShortStr::new(s);
            assert_eq!(short.as_str(), s);
            assert_eq!(matches!(short, ShortStr::Inline { .. }), s.len() <= INLINE);
        }
        assert_eq!(std::mem::size_of::<ShortStr>(), 24);
    }

    #[test]
    fn a_uid_is_written_back_exactly_as_it_was_read() {
        let uuid = "0f8e2c1a-7b3d-4e5f-9a6b-1c2d3e4f5a6b";
        assert!(matches!(Uid::new(uuid), Uid::Uuid(_)));
        for s in [
            uuid,
            "",
            "u1",
            // Not canonical: kept as given, never normalised.
            "0F8E2C1A-7B3D-4E5F-9A6B-1C2D3E4F5A6B",
            "0f8e2c1a-7b3d-4e5f-9a6b-1c2d3e4f5a6",
            "0f8e2c1a+7b3d-4e5f-9a6b-1c2d3e4f5a6b",
            "0f8e2c1a-7b3d-4e5f-9a6b-1c2d3e4f5a6g",
        ] {
            assert_eq!(Uid::new(s).to_string(), s);
        }
        assert_eq!(std::mem::size_of::<Uid>(), 24);
    }
}
