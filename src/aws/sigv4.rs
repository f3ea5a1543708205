//! SigV4 request signing through the `aws-sigv4` crate. We build the request fully (host,
//! content type, target) before signing, because every header present is signed and a
//! header added later would break the signature.

use super::error::AwsError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use std::time::SystemTime;

/// Signs `request` in place for `service` in `region` at `time`: adds `x-amz-date`,
/// `x-amz-security-token` (temporary credentials) and `authorization`. A `host` header is
/// set from the URI first so what we sign is what hyper sends.
pub(crate) fn sign_request(
    request: &mut http::Request<Bytes>,
    credentials: &Credentials,
    service: &str,
    region: &str,
    time: SystemTime,
) -> Result<(), AwsError> {
    let signing_err = |e: &dyn std::fmt::Display| AwsError::Signing {
        reason: e.to_string(),
    };
    if !request.headers().contains_key(http::header::HOST) {
        let authority = request.uri().authority().ok_or_else(|| AwsError::Signing {
            reason: "request URI has no host".into(),
        })?;
        let host = http::HeaderValue::from_str(authority.as_str()).map_err(|e| signing_err(&e))?;
        request.headers_mut().insert(http::header::HOST, host);
    }
    // The `Identity` type lives in aws-smithy-runtime-api, a transitive dependency we do not
    // name: inference picks it from `identity(&..)`.
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing_err(&e))?
        .into();
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        let value = value.to_str().map_err(|_| AwsError::Signing {
            reason: format!("header {name} is not visible ASCII"),
        })?;
        headers.push((name.as_str(), value));
    }
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| signing_err(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing_err(&e))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2015-08-30T12:36:00Z, the date of AWS's published SigV4 test suite.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn suite_credentials(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test",
        )
    }

    fn header<'a>(req: &'a http::Request<Bytes>, name: &str) -> &'a str {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn matches_the_aws_sigv4_test_suite_get_vanilla() {
        let mut req = http::Request::get("https://example.amazonaws.com/")
            .body(Bytes::new())
            .unwrap();
        sign_request(
            &mut req,
            &suite_credentials(None),
            "service",
            "us-east-1",
            suite_time(),
        )
        .unwrap();
        assert_eq!(header(&req, "x-amz-date"), "20150830T123600Z");
        assert_eq!(
            header(&req, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn ecr_call_signs_target_content_type_and_session_token() {
        let mut req = http::Request::post("https://api.ecr.eu-west-1.amazonaws.com/")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            )
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let creds = suite_credentials(Some("session-token-value"));
        sign_request(&mut req, &creds, "ecr", "eu-west-1", suite_time()).unwrap();
        let auth = header(&req, "authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ecr/aws4_request, "
            ),
            "{auth}"
        );
        assert!(
            auth.contains(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,"
            ),
            "{auth}"
        );
        assert_eq!(header(&req, "x-amz-security-token"), "session-token-value");
        assert_eq!(header(&req, "host"), "api.ecr.eu-west-1.amazonaws.com");
        assert!(!auth.contains("session-token-value"));
    }

    #[test]
    fn signature_depends_on_secret_body_region_and_time() {
        let sign_with = |secret: &str, body: &'static [u8], region: &str, t: SystemTime| {
            let mut req = http::Request::post("http://127.0.0.1:5000/")
                .body(Bytes::from_static(body))
                .unwrap();
            let creds = Credentials::new("AKID", secret, None, None, "test");
            sign_request(&mut req, &creds, "ecr", region, t).unwrap();
            header(&req, "authorization").to_string()
        };
        let base = sign_with("s1", b"{}", "eu-west-1", suite_time());
        assert_eq!(
            base,
            sign_with("s1", b"{}", "eu-west-1", suite_time()),
            "deterministic"
        );
        assert_ne!(base, sign_with("s2", b"{}", "eu-west-1", suite_time()));
        assert_ne!(base, sign_with("s1", b"{ }", "eu-west-1", suite_time()));
        assert_ne!(base, sign_with("s1", b"{}", "eu-west-2", suite_time()));
        assert_ne!(
            base,
            sign_with(
                "s1",
                b"{}",
                "eu-west-1",
                suite_time() + Duration::from_secs(1)
            )
        );
    }

    #[test]
    fn host_header_keeps_a_non_default_port() {
        let mut req = http::Request::post("http://127.0.0.1:5000/")
            .body(Bytes::new())
            .unwrap();
        sign_request(
            &mut req,
            &suite_credentials(None),
            "sts",
            "us-east-1",
            suite_time(),
        )
        .unwrap();
        assert_eq!(header(&req, "host"), "127.0.0.1:5000");
    }
}
