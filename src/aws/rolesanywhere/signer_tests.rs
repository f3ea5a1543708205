use super::*;
use crate::aws::x509::X509Identity;
use emulators::device_pki::{self, DeviceCa, DeviceSpec};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256};
use std::time::Duration;

/// SigV4's canonical request over the signed headers, rebuilt from the signed request the
/// way the SigV4 documentation spells it out.
fn canonical_request(req: &http::Request<Bytes>) -> (String, String) {
    let auth = header(req, "authorization");
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let mut out = format!(
        "{}\n{}\n{}\n",
        req.method(),
        req.uri().path(),
        req.uri().query().unwrap_or("")
    );
    for name in signed.split(';') {
        out.push_str(&format!("{name}:{}\n", header(req, name)));
    }
    out.push_str(&format!(
        "\n{signed}\n{}",
        hex(digest(&SHA256, req.body()).as_ref())
    ));
    (out, signed.to_string())
}

/// 2021-11-03T12:00:00Z, the time of AWS's example request.
fn example_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_635_940_800)
}

fn identity(pkcs8: &str, stored: &str, intermediate: bool) -> X509Identity {
    let root = DeviceCa::root("root").unwrap();
    let issuer = if intermediate {
        root.intermediate("intermediate").unwrap()
    } else {
        root
    };
    let device = issuer
        .issue(&DeviceSpec::new(pkcs8, stored, 424242))
        .unwrap();
    X509Identity::from_pem(device.cert_pem.as_bytes(), device.key_pem.as_bytes()).unwrap()
}

fn request() -> http::Request<Bytes> {
    http::Request::post("https://rolesanywhere.us-east-1.amazonaws.com/sessions")
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"durationSeconds":3600}"#))
        .unwrap()
}

fn header<'a>(req: &'a http::Request<Bytes>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[test]
fn the_canonical_request_follows_sigv4() {
    let id = identity(device_pki::P256_PKCS8, device_pki::P256_PKCS8, false);
    let mut req = request();
    sign_request(&mut req, &id, "us-east-1", example_time()).unwrap();
    let (canonical, signed) = canonical_request(&req);
    let x509 = header(&req, "x-amz-x509");
    let expected = format!(
        "POST\n/sessions\n\ncontent-type:application/json\nhost:rolesanywhere.us-east-1.amazonaws.com\n\
         x-amz-date:20211103T120000Z\nx-amz-x509:{x509}\n\ncontent-type;host;x-amz-date;x-amz-x509\n{}",
        hex(digest(&SHA256, br#"{"durationSeconds":3600}"#).as_ref())
    );
    assert_eq!(canonical, expected);
    assert_eq!(signed, "content-type;host;x-amz-date;x-amz-x509");
    assert_eq!(STANDARD.decode(x509).unwrap(), id.certificate().der());
}

#[test]
fn the_authorization_names_algorithm_serial_scope_and_verifies() {
    for (pkcs8, stored, algorithm) in [
        (
            device_pki::RSA_2048_PKCS8,
            device_pki::RSA_2048_PKCS1,
            "AWS4-X509-RSA-SHA256",
        ),
        (
            device_pki::P256_PKCS8,
            device_pki::P256_SEC1,
            "AWS4-X509-ECDSA-SHA256",
        ),
    ] {
        let id = identity(pkcs8, stored, false);
        let mut req = request();
        sign_request(&mut req, &id, "eu-west-1", example_time()).unwrap();
        let auth = header(&req, "authorization");
        let prefix = format!(
            "{algorithm} Credential=424242/20211103/eu-west-1/rolesanywhere/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature="
        );
        assert!(auth.starts_with(&prefix), "{auth}");
        let signature: Vec<u8> = (0..auth.len() - prefix.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&auth[prefix.len() + i..prefix.len() + i + 2], 16).unwrap())
            .collect();
        let (canonical, _) = canonical_request(&req);
        let string_to_sign = format!(
            "{algorithm}\n20211103T120000Z\n20211103/eu-west-1/rolesanywhere/aws4_request\n{}",
            hex(digest(&SHA256, canonical.as_bytes()).as_ref())
        );
        let verifier: &dyn ring::signature::VerificationAlgorithm = if algorithm.contains("RSA") {
            &RSA_PKCS1_2048_8192_SHA256
        } else {
            &ECDSA_P256_SHA256_ASN1
        };
        UnparsedPublicKey::new(verifier, id.certificate().public_key())
            .verify(string_to_sign.as_bytes(), &signature)
            .unwrap();
    }
}

#[test]
fn intermediates_travel_in_the_chain_header_and_are_signed() {
    let id = identity(device_pki::P256_PKCS8, device_pki::P256_PKCS8, true);
    let mut req = request();
    sign_request(&mut req, &id, "us-east-1", example_time()).unwrap();
    assert_eq!(
        STANDARD.decode(header(&req, "x-amz-x509-chain")).unwrap(),
        id.chain()[0]
    );
    assert!(header(&req, "authorization")
        .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain,"));
}

#[test]
fn requests_of_another_shape_are_refused_not_guessed_at() {
    let id = identity(device_pki::P256_PKCS8, device_pki::P256_PKCS8, false);
    let with = |uri: &str, extra: Option<(&str, &str)>| {
        let mut b = http::Request::post(uri).header("content-type", "application/json");
        if let Some((k, v)) = extra {
            b = b.header(k, v);
        }
        let mut req = b.body(Bytes::new()).unwrap();
        sign_request(&mut req, &id, "us-east-1", example_time())
    };
    assert!(with("https://h/sessions", None).is_ok());
    for (uri, extra) in [
        ("https://h/sessions?x=1", None),
        ("https://h/a%20b", None),
        ("https://h/sessions", Some(("x-extra", "1"))),
        ("/sessions", None),
    ] {
        let err = with(uri, extra).unwrap_err();
        assert!(
            matches!(err, AwsError::Signing { .. }),
            "{uri} {extra:?}: {err}"
        );
    }
}
