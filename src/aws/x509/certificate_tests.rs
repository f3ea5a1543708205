use super::*;
use crate::aws::x509::{key::SigningKey, X509Identity};
use emulators::device_pki::{self, DeviceCa, DeviceSpec};
use time::macros::datetime;

fn ca() -> DeviceCa {
    DeviceCa::root("test device CA").unwrap()
}

fn leaf_der(spec: &DeviceSpec<'_>) -> Vec<u8> {
    ca().issue(spec).unwrap().cert_der
}

#[test]
fn serial_validity_and_key_are_read_from_the_der() {
    let mut spec = DeviceSpec::new(
        device_pki::P256_PKCS8,
        device_pki::P256_PKCS8,
        0x0123_4567_89ab_cdef,
    );
    spec.not_before = datetime!(2026-01-02 03:04:05 UTC);
    spec.not_after = datetime!(2061-06-07 08:09:10 UTC); // GeneralizedTime from 2050 on
    let cert = Certificate::from_der(&leaf_der(&spec)).unwrap();
    assert_eq!(cert.serial(), "81985529216486895");
    assert_eq!(cert.not_before(), spec.not_before);
    assert_eq!(cert.not_after(), spec.not_after);
    assert_eq!(cert.key_kind(), PublicKeyKind::EcP256);
    let key = SigningKey::from_pem(device_pki::P256_PKCS8.as_bytes()).unwrap();
    assert_eq!(cert.public_key(), key.public_key());
}

#[test]
fn long_serials_are_printed_in_decimal() {
    assert_eq!(decimal_serial(&[0]).unwrap(), "0");
    assert_eq!(decimal_serial(&[0x00, 0xff]).unwrap(), "255");
    // 2^128 - 1 with a sign byte: 17 octets.
    let mut max = vec![0u8];
    max.extend([0xff; 16]);
    assert_eq!(decimal_serial(&max).unwrap(), u128::MAX.to_string());
    assert!(decimal_serial(&[]).is_err());
    assert!(decimal_serial(&[0x80]).is_err(), "negative");
    assert!(decimal_serial(&[0x00, 0x01]).is_err(), "not minimal");
    assert!(decimal_serial(&[1; 22]).is_err(), "too long");
}

#[test]
fn truncated_der_is_an_error_at_every_length() {
    let der = leaf_der(&DeviceSpec::new(
        device_pki::RSA_2048_PKCS8,
        device_pki::RSA_2048_PKCS8,
        7,
    ));
    for cut in 0..der.len() {
        assert!(Certificate::from_der(&der[..cut]).is_err(), "cut at {cut}");
    }
    assert!(Certificate::from_der(&der).is_ok());
}

#[test]
fn flipped_bytes_never_panic() {
    let der = leaf_der(&DeviceSpec::new(
        device_pki::P256_PKCS8,
        device_pki::P256_PKCS8,
        9,
    ));
    // A cheap deterministic spread of positions and values (xorshift).
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut copy = der.clone();
        let at = x as usize % copy.len();
        copy[at] ^= (x >> 24) as u8 | 1;
        let _ = Certificate::from_der(&copy);
        let _ = Certificate::from_der(&copy[..at]);
    }
}

#[test]
fn hostile_times_are_refused() {
    let time = |tag: u8, text: &str| der::write(tag, text.as_bytes());
    for bad in [
        time(der::UTC_TIME, "261302000000Z"),           // month 13
        time(der::UTC_TIME, "260230000000Z"),           // 30 February
        time(der::UTC_TIME, "2601010000Z"),             // no seconds
        time(der::UTC_TIME, "260101000000+0100"),       // not UTC
        time(der::GENERALIZED_TIME, "20260101250000Z"), // hour 25
        time(der::INTEGER, "260101000000Z"),
    ] {
        assert!(
            read_time(&mut Reader::new(&bad), "notAfter").is_err(),
            "{bad:?}"
        );
    }
    let ok = time(der::UTC_TIME, "491231235959Z");
    assert_eq!(
        read_time(&mut Reader::new(&ok), "t").unwrap(),
        datetime!(2049-12-31 23:59:59 UTC)
    );
    let ok = time(der::UTC_TIME, "500101000000Z");
    assert_eq!(
        read_time(&mut Reader::new(&ok), "t").unwrap(),
        datetime!(1950-01-01 00:00:00 UTC)
    );
}

#[test]
fn validity_is_checked_against_now() {
    let spec = DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_PKCS8, 3);
    let cert = Certificate::from_der(&leaf_der(&spec)).unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(cert.check_validity(now).is_ok());
    let err = cert
        .check_validity(now + time::Duration::days(2))
        .unwrap_err();
    assert!(
        matches!(err, CertificateError::Expired { not_after, .. } if not_after.unix_timestamp() == spec.not_after.unix_timestamp())
    );
    let err = cert
        .check_validity(now - time::Duration::days(1))
        .unwrap_err();
    assert!(matches!(err, CertificateError::NotYetValid { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("not valid before 20") && shown.contains('Z'),
        "{shown}"
    );
}

#[test]
fn every_key_encoding_loads_and_matches_its_certificate() {
    let ca = ca();
    let cases = [
        (
            device_pki::RSA_2048_PKCS8,
            device_pki::RSA_2048_PKCS8,
            "AWS4-X509-RSA-SHA256",
        ),
        (
            device_pki::RSA_2048_PKCS8,
            device_pki::RSA_2048_PKCS1,
            "AWS4-X509-RSA-SHA256",
        ),
        (
            device_pki::P256_PKCS8,
            device_pki::P256_PKCS8,
            "AWS4-X509-ECDSA-SHA256",
        ),
        (
            device_pki::P256_PKCS8,
            device_pki::P256_SEC1,
            "AWS4-X509-ECDSA-SHA256",
        ),
        (
            device_pki::P384_PKCS8,
            device_pki::P384_PKCS8,
            "AWS4-X509-ECDSA-SHA256",
        ),
        (
            device_pki::P384_PKCS8,
            device_pki::P384_SEC1,
            "AWS4-X509-ECDSA-SHA256",
        ),
    ];
    for (pkcs8, stored, algorithm) in cases {
        let device = ca.issue(&DeviceSpec::new(pkcs8, stored, 11)).unwrap();
        let identity = X509Identity::from_pem(device.cert_pem.as_bytes(), stored.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", &stored[..30]));
        assert_eq!(identity.key().algorithm().name(), algorithm);
        assert_eq!(identity.certificate().serial(), "11");
    }
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let device = ca()
        .issue(&DeviceSpec::new(
            device_pki::P256_PKCS8,
            device_pki::P256_PKCS8,
            1,
        ))
        .unwrap();
    let err = X509Identity::from_pem(
        device.cert_pem.as_bytes(),
        device_pki::RSA_2048_PKCS1.as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(err, CertificateError::KeyMismatch), "{err}");
}

#[test]
fn small_rsa_and_garbage_keys_are_refused_clearly() {
    let err = SigningKey::from_pem(device_pki::RSA_1024_PKCS8.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            CertificateError::KeyRejected(_) | CertificateError::UnsupportedKey(_)
        ),
        "{err}"
    );
    let err =
        SigningKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
    assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");
    let cut = &device_pki::RSA_2048_PKCS8[..600];
    assert!(SigningKey::from_pem(cut.as_bytes()).is_err());
}

/// AWS4-X509-ECDSA-SHA256 on P-384 is ECDSA over SHA-256 (as aws_signing_helper signs),
/// which ring verifies as ECDSA_P384_SHA256_ASN1 with the certificate's key.
#[test]
fn p384_pkcs8_and_sec1_keys_sign_sha256_that_ring_verifies() {
    use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1};
    let ca = ca();
    for stored in [device_pki::P384_PKCS8, device_pki::P384_SEC1] {
        let device = ca
            .issue(&DeviceSpec::new(device_pki::P384_PKCS8, stored, 384))
            .unwrap();
        let cert = Certificate::from_der(&device.cert_der).unwrap();
        assert_eq!(cert.key_kind(), PublicKeyKind::EcP384);
        let key = SigningKey::from_pem(stored.as_bytes()).unwrap();
        assert_eq!(key.algorithm().name(), "AWS4-X509-ECDSA-SHA256");
        assert_eq!(key.public_key(), cert.public_key());
        let sha256 = UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, cert.public_key());
        let sha384 = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, cert.public_key());
        // Enough signatures that r or s has its top bit set or a leading zero octet,
        // which DER must encode minimally for ring to accept them.
        for i in 0..64u32 {
            let message = format!("AWS4-X509-ECDSA-SHA256\n20261206T091500Z\n{i}");
            let signature = key.sign(message.as_bytes()).unwrap();
            sha256
                .verify(message.as_bytes(), &signature)
                .unwrap_or_else(|_| panic!("{i}: {signature:02x?}"));
            assert!(sha256.verify(b"tampered", &signature).is_err());
            assert!(sha384.verify(message.as_bytes(), &signature).is_err());
        }
        let shown = format!("{key:?}");
        assert_eq!(shown, "SigningKey(ECDSA P-384, redacted)");
        let identity =
            X509Identity::from_pem(device.cert_pem.as_bytes(), stored.as_bytes()).unwrap();
        let shown = format!("{identity:?}");
        for line in stored.lines().skip(1).filter(|l| l.len() >= 16) {
            assert!(!shown.contains(&line[..16]), "{shown}");
        }
        assert!(shown.contains("redacted"), "{shown}");
    }
}

/// A P-384 scalar of zero, or of the group order's size plus one octet, is refused as a
/// key, not a panic, and the error shows none of it.
#[test]
fn p384_scalars_out_of_range_are_rejected() {
    use base64::Engine;
    for scalar in [vec![0u8; 48], vec![0xff; 48], vec![1; 49], vec![]] {
        let curve = der::write(der::CONTEXT_0, &der::write(der::OID, OID_P384));
        let body = [
            der::write(der::INTEGER, &[1]),
            der::write(der::OCTET_STRING, &scalar),
            curve,
        ]
        .concat();
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(der::write(der::SEQUENCE, &body));
        let pem = format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n");
        let err = SigningKey::from_pem(pem.as_bytes()).unwrap_err();
        assert!(matches!(err, CertificateError::KeyRejected(_)), "{err}");
        assert!(!format!("{err} {err:?}").contains("ffff"), "{err:?}");
    }
}

#[test]
fn key_material_is_in_no_debug_and_no_error() {
    let key = SigningKey::from_pem(device_pki::RSA_2048_PKCS1.as_bytes()).unwrap();
    assert_eq!(format!("{key:?}"), "SigningKey(RSA 2048 bits, redacted)");
    let body_line = device_pki::P256_SEC1.lines().nth(1).unwrap();
    let mut broken = device_pki::P256_SEC1.replace(&body_line[10..20], "AAAAAAAAAA");
    broken.push_str("junk");
    let shown = match SigningKey::from_pem(broken.as_bytes()) {
        Ok(k) => format!("{k:?}"),
        Err(e) => format!("{e} {e:?}"),
    };
    for line in device_pki::P256_SEC1.lines().skip(1) {
        assert!(!shown.contains(&line[..16]), "{shown}");
    }
    let device = ca()
        .issue(&DeviceSpec::new(
            device_pki::P256_PKCS8,
            device_pki::P256_SEC1,
            2,
        ))
        .unwrap();
    let identity =
        X509Identity::from_pem(device.cert_pem.as_bytes(), device.key_pem.as_bytes()).unwrap();
    let shown = format!("{identity:?}");
    assert!(
        shown.contains("redacted") && !shown.contains(&body_line[..16]),
        "{shown}"
    );
}

#[test]
fn the_chain_after_the_leaf_is_kept_in_order() {
    let root = ca();
    let intermediate = root.intermediate("intermediate").unwrap();
    let device = intermediate
        .issue(&DeviceSpec::new(
            device_pki::P256_PKCS8,
            device_pki::P256_PKCS8,
            5,
        ))
        .unwrap();
    let (leaf, chain) = Certificate::from_pem_bundle(device.cert_pem.as_bytes()).unwrap();
    assert_eq!(leaf.der(), &device.cert_der[..]);
    assert_eq!(chain, vec![intermediate.der()]);
    assert!(Certificate::from_pem_bundle(b"").is_err());
}
