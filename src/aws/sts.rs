//! STS AssumeRole (signed) and AssumeRoleWithWebIdentity (unsigned: the web identity token
//! is the proof). Query protocol: form-encoded `POST /`, XML answers.

use super::endpoint::Endpoint;
use super::error::AwsError;
use super::http::{AwsHttp, HttpResponse};
use super::sigv4::sign_request;
use super::wire::{
    describe_body, error_from_response, form_encode, parse_timestamp, xml_tag, xml_unescape,
};
use aws_credential_types::Credentials;
use bytes::Bytes;
use std::time::SystemTime;

const VERSION: &str = "2011-06-15";
/// Session name used when none is configured; visible in CloudTrail.
pub(crate) const DEFAULT_SESSION_NAME: &str = "ecr-creds-refresher";

/// What to assume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AssumeRoleParams {
    pub role_arn: String,
    pub session_name: String,
    /// Set when the role's trust policy requires `sts:ExternalId` (third-party accounts).
    pub external_id: Option<String>,
    /// 900..=43200; None lets STS pick (1 hour).
    pub duration_seconds: Option<u32>,
}

// === impl AssumeRoleParams ===

impl AssumeRoleParams {
    /// Validates the session name and role ARN before any call is made.
    pub(crate) fn new(
        role_arn: impl Into<String>,
        session_name: Option<&str>,
    ) -> Result<Self, AwsError> {
        let role_arn = role_arn.into();
        validate_role_arn(&role_arn)?;
        let session_name = session_name.unwrap_or(DEFAULT_SESSION_NAME).to_string();
        validate_session_name(&session_name)?;
        Ok(Self {
            role_arn,
            session_name,
            external_id: None,
            duration_seconds: None,
        })
    }

    #[must_use]
    pub(crate) fn with_external_id(mut self, external_id: Option<String>) -> Self {
        self.external_id = external_id;
        self
    }
}

/// STS's rule: 2 to 64 characters of `[\w+=,.@-]`.
pub(crate) fn validate_session_name(name: &str) -> Result<(), AwsError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if (2..=64).contains(&name.len()) && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(AwsError::config(
            "role session name",
            format!("{name:?} must be 2 to 64 characters of letters, digits and _+=,.@-"),
        ))
    }
}

/// A role ARN is `arn:<partition>:iam::<account>:role/<name>`.
pub(crate) fn validate_role_arn(arn: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && !parts[4].is_empty()
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if ok {
        Ok(())
    } else {
        Err(AwsError::config(
            "role ARN",
            format!("{arn:?} is not of the form arn:aws:iam::<account>:role/<name>"),
        ))
    }
}

/// AssumeRole signed with `base` credentials.
pub(crate) async fn assume_role(
    http: &AwsHttp,
    endpoint: &Endpoint,
    base: &Credentials,
    params: &AssumeRoleParams,
) -> Result<Credentials, AwsError> {
    let duration = params.duration_seconds.map(|d| d.to_string());
    let mut form = vec![
        ("Action", "AssumeRole"),
        ("Version", VERSION),
        ("RoleArn", params.role_arn.as_str()),
        ("RoleSessionName", params.session_name.as_str()),
    ];
    if let Some(id) = &params.external_id {
        form.push(("ExternalId", id.as_str()));
    }
    if let Some(d) = &duration {
        form.push(("DurationSeconds", d.as_str()));
    }
    let mut request = form_request(endpoint, &form)?;
    sign_request(
        &mut request,
        base,
        endpoint.signing_service,
        &endpoint.signing_region,
        SystemTime::now(),
    )?;
    let response = http.send(request).await?;
    parse_credentials_response(&response, "AssumeRole", "sts-assume-role")
}

/// AssumeRoleWithWebIdentity, unsigned; `web_identity_token` is the projected service
/// account token (read fresh by the caller: the kubelet rotates it).
pub(crate) async fn assume_role_with_web_identity(
    http: &AwsHttp,
    endpoint: &Endpoint,
    role_arn: &str,
    session_name: &str,
    web_identity_token: &str,
) -> Result<Credentials, AwsError> {
    validate_role_arn(role_arn)?;
    validate_session_name(session_name)?;
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", web_identity_token),
    ];
    let request = form_request(endpoint, &form)?;
    let response = http.send(request).await?;
    parse_credentials_response(&response, "AssumeRoleWithWebIdentity", "sts-web-identity")
}

fn form_request(
    endpoint: &Endpoint,
    form: &[(&str, &str)],
) -> Result<http::Request<Bytes>, AwsError> {
    http::Request::post(format!("{}/", endpoint.url))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Bytes::from(form_encode(form)))
        .map_err(|e| AwsError::Signing {
            reason: e.to_string(),
        })
}

/// Reads `<{action}Response><{action}Result><Credentials>..` or an XML error.
pub(crate) fn parse_credentials_response(
    response: &HttpResponse,
    action: &str,
    provider_name: &'static str,
) -> Result<Credentials, AwsError> {
    let status = response.status.as_u16();
    if !response.status.is_success() {
        return Err(error_from_response(
            "sts",
            status,
            &response.headers,
            &response.body,
        ));
    }
    let bad = |reason: String| AwsError::Unparseable {
        service: "sts",
        status,
        reason,
        what: describe_body(&response.headers, &response.body),
    };
    let doc = std::str::from_utf8(&response.body).map_err(|_| bad("answer is not UTF-8".into()))?;
    let result = xml_tag(doc, &format!("{action}Result"))
        .ok_or_else(|| bad(format!("no {action}Result element")))?;
    let creds =
        xml_tag(result, "Credentials").ok_or_else(|| bad("no Credentials element".into()))?;
    let field = |name: &str| {
        xml_tag(creds, name)
            .map(xml_unescape)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("Credentials has no {name}")))
    };
    let expiration = field("Expiration")?;
    let expiry = parse_timestamp(&expiration)
        .ok_or_else(|| bad("Expiration is not an ISO-8601 time".into()))?;
    Ok(Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("SessionToken")?),
        Some(SystemTime::from(expiry)),
        provider_name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::ErrorKind;
    use http::{HeaderMap, StatusCode};

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    const OK: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>secret/with+chars&amp;</SecretAccessKey>
      <SessionToken>token==</SessionToken>
      <Expiration>2030-01-02T03:04:05Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>"#;

    #[test]
    fn credentials_are_read_from_the_xml_answer() {
        let c = parse_credentials_response(&answer(200, OK), "AssumeRole", "t").unwrap();
        assert_eq!(c.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key(), "secret/with+chars&");
        assert_eq!(c.session_token(), Some("token=="));
        let exp = time::OffsetDateTime::from(c.expiry().unwrap());
        assert_eq!(exp.unix_timestamp(), 1_893_553_445);
    }

    #[test]
    fn missing_fields_are_unparseable_and_do_not_echo_the_body() {
        let body = OK.replace("<SessionToken>token==</SessionToken>", "");
        let err = parse_credentials_response(&answer(200, &body), "AssumeRole", "t").unwrap_err();
        assert!(err.to_string().contains("SessionToken"), "{err}");
        assert!(!err.to_string().contains("secret/with"), "{err}");
        let err = parse_credentials_response(&answer(200, OK), "AssumeRoleWithWebIdentity", "t")
            .unwrap_err();
        assert!(matches!(err, AwsError::Unparseable { .. }));
    }

    #[test]
    fn xml_errors_become_typed_errors() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>";
        let err = parse_credentials_response(&answer(403, body), "AssumeRole", "t").unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::AccessDenied));
        assert!(err.to_string().contains("sts:AssumeRole"));
        let body = "<ErrorResponse><Error><Code>ExpiredTokenException</Code><Message>Token expired</Message></Error></ErrorResponse>";
        let err = parse_credentials_response(&answer(400, body), "AssumeRoleWithWebIdentity", "t")
            .unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::ExpiredToken));
    }

    #[test]
    fn session_names_follow_the_sts_rule() {
        for ok in [
            "ab",
            "ecr-creds-refresher",
            "a_b+c=d,e.f@g-h",
            &"x".repeat(64),
        ] {
            assert!(validate_session_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            &"x".repeat(65),
            "has space",
            "slash/no",
            "é-accent",
            "colon:no",
        ] {
            assert!(validate_session_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_arns_are_checked() {
        assert!(validate_role_arn("arn:aws:iam::123456789012:role/ecr-pull").is_ok());
        assert!(validate_role_arn("arn:aws-cn:iam::123456789012:role/path/ecr-pull").is_ok());
        for bad in [
            "",
            "ecr-pull",
            "arn:aws:iam::123456789012:user/bob",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:::role/x",
            "arn:aws:iam::1:role/",
        ] {
            assert!(validate_role_arn(bad).is_err(), "{bad}");
        }
    }
}
