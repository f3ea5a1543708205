//! Just enough DER for X.509: a reader that checks every length against what is left
//! (hostile input gives a [`DerError`], never a panic) and a writer for the one structure
//! we build (a PKCS#8 wrapper around a SEC1 key). Multi-byte tags, indefinite lengths and
//! lengths over 4 bytes are refused: X.509 certificates and keys never need them.

use std::fmt;

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const UTC_TIME: u8 = 0x17;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const SEQUENCE: u8 = 0x30;
/// `[0]` constructed: a certificate's version, an EC key's curve parameters.
pub(crate) const CONTEXT_0: u8 = 0xa0;

/// What was wrong, and in which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerError {
    pub field: &'static str,
    pub problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The input ends before the field does.
    Truncated,
    /// Another tag than the one the structure has here.
    UnexpectedTag { expected: u8, found: u8 },
    /// A length form DER does not allow (indefinite, non-minimal, over 4 bytes).
    BadLength,
    /// The field is well-formed DER but its value is not acceptable.
    BadValue(&'static str),
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field;
        match &self.problem {
            Problem::Truncated => write!(f, "{field}: the DER ends early"),
            Problem::UnexpectedTag { expected, found } => {
                write!(
                    f,
                    "{field}: tag 0x{found:02x} where 0x{expected:02x} belongs"
                )
            }
            Problem::BadLength => write!(f, "{field}: a length DER does not allow"),
            Problem::BadValue(why) => write!(f, "{field}: {why}"),
        }
    }
}

impl std::error::Error for DerError {}

/// A cursor over DER elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

// === impl Reader ===

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element, whole: `(tag, contents, the element's bytes with its header)`.
    pub(crate) fn element(
        &mut self,
        field: &'static str,
    ) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
        let err = |problem| DerError { field, problem };
        let (&tag, after_tag) = self.rest.split_first().ok_or(err(Problem::Truncated))?;
        if tag & 0x1f == 0x1f {
            return Err(err(Problem::BadValue(
                "multi-byte tags are not used in X.509",
            )));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(err(Problem::Truncated))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after_len.len() < n {
                return Err(err(if n == 0 || n > 4 {
                    Problem::BadLength
                } else {
                    Problem::Truncated
                }));
            }
            let (bytes, rest) = after_len.split_at(n);
            after_len = rest;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            // DER: the shortest form, so no leading zero byte and nothing under 128.
            if bytes[0] == 0 || len < 0x80 {
                return Err(err(Problem::BadLength));
            }
            len
        };
        if after_len.len() < len {
            return Err(err(Problem::Truncated));
        }
        let header = self.rest.len() - after_len.len();
        let whole = &self.rest[..header + len];
        let contents = &after_len[..len];
        self.rest = &after_len[len..];
        Ok((tag, contents, whole))
    }

    /// The contents of the next element, which must have `tag`.
    pub(crate) fn expect(&mut self, tag: u8, field: &'static str) -> Result<&'a [u8], DerError> {
        let (found, contents, _) = self.element(field)?;
        if found != tag {
            return Err(DerError {
                field,
                problem: Problem::UnexpectedTag {
                    expected: tag,
                    found,
                },
            });
        }
        Ok(contents)
    }

    /// A reader over the contents of the next element, which must have `tag`.
    pub(crate) fn nested(&mut self, tag: u8, field: &'static str) -> Result<Self, DerError> {
        self.expect(tag, field).map(Self::new)
    }
}

/// An unsigned big-endian number as a DER INTEGER: leading zero octets dropped, and one
/// zero octet put back where the top bit would read as negative.
pub(crate) fn write_unsigned(magnitude: &[u8]) -> Vec<u8> {
    let digits = &magnitude[magnitude.iter().take_while(|b| **b == 0).count()..];
    let mut contents = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        contents.push(0);
    }
    contents.extend_from_slice(digits);
    write(INTEGER, &contents)
}

/// One element: `tag`, its DER length, `contents`.
pub(crate) fn write(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_are_read_and_written_alike() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let contents = vec![7u8; len];
            let der = write(OCTET_STRING, &contents);
            let mut r = Reader::new(&der);
            assert_eq!(r.expect(OCTET_STRING, "x").unwrap(), &contents[..], "{len}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn unsigned_integers_are_minimal_and_never_negative() {
        for (magnitude, der) in [
            (&[0u8, 0, 0x7f][..], &[0x02u8, 1, 0x7f][..]),
            (&[0x80], &[0x02, 2, 0, 0x80]),
            (&[0, 0, 0xff, 1], &[0x02, 3, 0, 0xff, 1]),
            (&[0, 0], &[0x02, 1, 0]),
            (&[], &[0x02, 1, 0]),
        ] {
            assert_eq!(write_unsigned(magnitude), der, "{magnitude:?}");
        }
    }

    #[test]
    fn lengths_der_forbids_are_refused() {
        for bad in [
            &[0x04, 0x80][..],                  // indefinite
            &[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], // long form for a short length
            &[0x04, 0x82, 0x00, 0x80],          // leading zero
            &[0x04, 0x85, 1, 1, 1, 1, 1],       // five length bytes
        ] {
            let err = Reader::new(bad).element("f").unwrap_err();
            assert_eq!(err.problem, Problem::BadLength, "{bad:?}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let der = write(
            SEQUENCE,
            &[write(INTEGER, &[1; 200]), write(OID, &[2; 3])].concat(),
        );
        for cut in 0..der.len() {
            let mut r = Reader::new(&der[..cut]);
            let err = r.expect(SEQUENCE, "seq").unwrap_err();
            assert_eq!(err.problem, Problem::Truncated, "cut at {cut}");
        }
    }

    #[test]
    fn a_wrong_tag_names_both_tags() {
        let der = write(INTEGER, &[1]);
        let err = Reader::new(&der)
            .expect(SEQUENCE, "tbsCertificate")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tbsCertificate: tag 0x02 where 0x30 belongs"
        );
        assert!(Reader::new(&[0x1f, 0x01, 0x00]).element("f").is_err());
    }
}
