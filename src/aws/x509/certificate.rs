//! The X.509 fields CreateSession needs, read from the certificate's DER: the serial
//! number (decimal, in the credential scope), the validity (checked before AWS is asked)
//! and the subject public key (to check the private key belongs to it).

use super::der::{self, DerError, Problem, Reader};
use super::error::CertificateError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// rsaEncryption, 1.2.840.113549.1.1.1.
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (P-384), 1.3.132.0.34.
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// RFC 5280 caps serials at 20 octets; some CAs add a sign byte, so allow a little more.
const MAX_SERIAL_OCTETS: usize = 21;

/// The kind of key a certificate certifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublicKeyKind {
    Rsa,
    EcP256,
    EcP384,
    /// Another algorithm or curve (Ed25519, P-521...): CreateSession does not take it.
    Other,
}

/// A parsed certificate: its DER and the fields we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Certificate {
    der: Vec<u8>,
    serial: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_kind: PublicKeyKind,
    public_key: Vec<u8>,
}

// === impl Certificate ===

impl Certificate {
    /// Parses one certificate's DER.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, DerError> {
        let mut cert = Reader::new(der).nested(der::SEQUENCE, "Certificate")?;
        let mut tbs = cert.nested(der::SEQUENCE, "tbsCertificate")?;
        if tbs.peek_tag() == Some(der::CONTEXT_0) {
            tbs.element("version")?;
        }
        let serial = decimal_serial(tbs.expect(der::INTEGER, "serialNumber")?)?;
        tbs.expect(der::SEQUENCE, "signature")?;
        tbs.expect(der::SEQUENCE, "issuer")?;
        let mut validity = tbs.nested(der::SEQUENCE, "validity")?;
        let not_before = read_time(&mut validity, "notBefore")?;
        let not_after = read_time(&mut validity, "notAfter")?;
        tbs.expect(der::SEQUENCE, "subject")?;
        let (key_kind, public_key) = read_spki(&mut tbs)?;
        Ok(Self {
            der: der.to_vec(),
            serial,
            not_before,
            not_after,
            key_kind,
            public_key,
        })
    }

    /// The first certificate of a PEM bundle, and the DER of the ones after it (the
    /// chain, as cert-manager writes `tls.crt`: leaf first, then intermediates).
    pub(crate) fn from_pem_bundle(pem: &[u8]) -> Result<(Self, Vec<Vec<u8>>), CertificateError> {
        let ders = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertificateError::Pem {
                what: "certificate",
                reason: format!("invalid PEM: {e:?}"),
            })?;
        let (leaf, chain) = ders.split_first().ok_or(CertificateError::Pem {
            what: "certificate",
            reason: "no CERTIFICATE block".into(),
        })?;
        let leaf = Self::from_der(leaf)?;
        for c in chain {
            Self::from_der(c)?;
        }
        Ok((leaf, chain.iter().map(|c| c.to_vec()).collect()))
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// The serial number in decimal, as the credential scope carries it.
    pub(crate) fn serial(&self) -> &str {
        &self.serial
    }

    #[cfg(test)]
    pub(crate) fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub(crate) fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn key_kind(&self) -> PublicKeyKind {
        self.key_kind
    }

    /// The subjectPublicKey bits: an RSAPublicKey's DER, or an uncompressed EC point.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Whether `now` is inside the validity period; the error carries the date passed.
    pub(crate) fn check_validity(&self, now: OffsetDateTime) -> Result<(), CertificateError> {
        if now < self.not_before {
            return Err(CertificateError::NotYetValid {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        if now > self.not_after {
            return Err(CertificateError::Expired {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

fn bad(field: &'static str, why: &'static str) -> DerError {
    DerError {
        field,
        problem: Problem::BadValue(why),
    }
}

/// A positive INTEGER's big-endian bytes to decimal (what `%d` of the serial prints).
fn decimal_serial(bytes: &[u8]) -> Result<String, DerError> {
    let field = "serialNumber";
    match bytes {
        [] => return Err(bad(field, "empty")),
        [first, ..] if first & 0x80 != 0 => return Err(bad(field, "negative")),
        [0, second, ..] if second & 0x80 == 0 => return Err(bad(field, "not minimally encoded")),
        _ if bytes.len() > MAX_SERIAL_OCTETS => return Err(bad(field, "longer than 21 octets")),
        _ => {}
    }
    let mut number = bytes.to_vec();
    let mut digits = Vec::new();
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    Ok(String::from_utf8_lossy(&digits).into_owned())
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn read_time(r: &mut Reader<'_>, field: &'static str) -> Result<OffsetDateTime, DerError> {
    let (tag, contents, _) = r.element(field)?;
    let digits = match (tag, contents.split_last()) {
        (der::UTC_TIME | der::GENERALIZED_TIME, Some((b'Z', digits))) => digits,
        (der::UTC_TIME | der::GENERALIZED_TIME, _) => return Err(bad(field, "not a UTC time")),
        (found, _) => {
            return Err(DerError {
                field,
                problem: Problem::UnexpectedTag {
                    expected: der::UTC_TIME,
                    found,
                },
            })
        }
    };
    let year_digits = if tag == der::UTC_TIME { 2 } else { 4 };
    if digits.len() != year_digits + 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad(field, "not YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ"));
    }
    let number = |at: usize, len: usize| {
        digits[at..at + len]
            .iter()
            .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'))
    };
    let mut year = number(0, year_digits);
    if tag == der::UTC_TIME {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let [month, day, hour, minute, second] =
        [0, 2, 4, 6, 8].map(|at| number(year_digits + at, 2) as u8);
    let date = Month::try_from(month)
        .ok()
        .and_then(|m| Date::from_calendar_date(year, m, day).ok())
        .ok_or(bad(field, "not a calendar date"))?;
    let time = Time::from_hms(hour, minute, second).map_err(|_| bad(field, "not a time of day"))?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

/// SubjectPublicKeyInfo: the algorithm (and curve) and the key bits.
fn read_spki(tbs: &mut Reader<'_>) -> Result<(PublicKeyKind, Vec<u8>), DerError> {
    let mut spki = tbs.nested(der::SEQUENCE, "subjectPublicKeyInfo")?;
    let mut algorithm = spki.nested(der::SEQUENCE, "subjectPublicKeyInfo.algorithm")?;
    let oid = algorithm.expect(der::OID, "subjectPublicKeyInfo.algorithm")?;
    let kind = if oid == OID_RSA {
        PublicKeyKind::Rsa
    } else if oid == OID_EC {
        match algorithm.expect(der::OID, "namedCurve") {
            Ok(OID_P256) => PublicKeyKind::EcP256,
            Ok(OID_P384) => PublicKeyKind::EcP384,
            _ => PublicKeyKind::Other,
        }
    } else {
        PublicKeyKind::Other
    };
    let bits = spki.expect(der::BIT_STRING, "subjectPublicKey")?;
    match bits.split_first() {
        Some((0, key)) if !key.is_empty() => Ok((kind, key.to_vec())),
        _ => Err(bad("subjectPublicKey", "not a whole number of bytes")),
    }
}

#[cfg(test)]
#[path = "certificate_tests.rs"]
mod tests;
