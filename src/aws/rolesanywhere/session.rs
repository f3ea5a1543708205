//! CreateSession: `POST /sessions` with a JSON body, signed by [`super::signer`], answered
//! with a credential set. The answer holds live credentials, so no part of it is logged
//! or repeated in an error.

use super::signer::sign_request;
use crate::aws::endpoint::Endpoint;
use crate::aws::error::AwsError;
use crate::aws::http::AwsHttp;
use crate::aws::wire::{describe_body, error_from_response, parse_timestamp};
use crate::aws::x509::X509Identity;
use aws_credential_types::Credentials;
use bytes::Bytes;
use std::time::SystemTime;

/// CreateSession's bounds on `durationSeconds`.
pub(crate) const MIN_DURATION_SECONDS: u32 = 900;
pub(crate) const MAX_DURATION_SECONDS: u32 = 43_200;
/// The default session: an hour, refreshed five minutes before it ends.
pub(crate) const DEFAULT_DURATION_SECONDS: u32 = 3_600;

/// What to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionParams {
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    pub role_arn: String,
    pub duration_seconds: u32,
}

/// Exchanges a signature by `identity` for the role's temporary credentials.
pub(crate) async fn create_session(
    http: &AwsHttp,
    endpoint: &Endpoint,
    identity: &X509Identity,
    params: &SessionParams,
    now: SystemTime,
) -> Result<Credentials, AwsError> {
    let body = serde_json::json!({
        "durationSeconds": params.duration_seconds,
        "profileArn": params.profile_arn,
        "roleArn": params.role_arn,
        "trustAnchorArn": params.trust_anchor_arn,
    })
    .to_string();
    let mut request = http::Request::post(format!("{}/sessions", endpoint.url))
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .map_err(|e| AwsError::Signing {
            reason: e.to_string(),
        })?;
    sign_request(&mut request, identity, &endpoint.signing_region, now)?;
    let response = http.send(request).await?;
    let status = response.status.as_u16();
    if !response.status.is_success() {
        return Err(error_from_response(
            "rolesanywhere",
            status,
            &response.headers,
            &response.body,
        ));
    }
    parse_credential_set(&response.body).map_err(|reason| AwsError::Unparseable {
        service: "rolesanywhere",
        status,
        reason: reason.into(),
        what: describe_body(&response.headers, &response.body),
    })
}

/// `{"credentialSet": [{"credentials": {accessKeyId, secretAccessKey, sessionToken,
/// expiration}}]}`; the error names the missing part, never a value.
fn parse_credential_set(body: &[u8]) -> Result<Credentials, &'static str> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the answer is not JSON")?;
    let credentials = doc
        .get("credentialSet")
        .and_then(|s| s.get(0))
        .and_then(|s| s.get("credentials"))
        .ok_or("no credentialSet[0].credentials")?;
    let field = |name: &'static str| {
        credentials
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(name)
    };
    let expiry = parse_timestamp(field("expiration")?).ok_or("expiration is not a time")?;
    Ok(Credentials::new(
        field("accessKeyId")?,
        field("secretAccessKey")?,
        Some(field("sessionToken")?.to_string()),
        Some(SystemTime::from(expiry)),
        "rolesanywhere",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_set_is_read_and_gaps_are_named() {
        let ok = br#"{"credentialSet":[{"assumedRoleUser":{"arn":"a"},"credentials":{"accessKeyId":"ASIA1","secretAccessKey":"s/+","sessionToken":"t","expiration":"2030-01-02T03:04:05Z"},"packedPolicySize":1,"roleArn":"r","sourceIdentity":"CN=d"}],"subjectArn":"x"}"#;
        let c = parse_credential_set(ok).unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key()), ("ASIA1", "s/+"));
        assert_eq!(c.session_token(), Some("t"));
        let body = String::from_utf8_lossy(ok).replace(r#""sessionToken":"t","#, "");
        assert_eq!(
            parse_credential_set(body.as_bytes()).unwrap_err(),
            "sessionToken"
        );
        assert_eq!(
            parse_credential_set(br#"{"credentialSet":[]}"#).unwrap_err(),
            "no credentialSet[0].credentials"
        );
        assert_eq!(
            parse_credential_set(b"<html>").unwrap_err(),
            "the answer is not JSON"
        );
    }
}
