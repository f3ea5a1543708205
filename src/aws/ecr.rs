//! ECR and ECR Public GetAuthorizationToken: the one call this operator exists for.
//! JSON 1.1 protocol: `POST /` with an `X-Amz-Target` naming the operation.

use super::endpoint::{registry_host, Endpoint, Endpoints, ECR_PUBLIC_REGISTRY};
use super::error::AwsError;
use super::http::{AwsHttp, HttpResponse};
use super::retry::RetryPolicy;
use super::sigv4::sign_request;
use super::wire::{describe_body, epoch_seconds, error_from_response};
use aws_credential_types::Credentials;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use std::fmt;
use std::time::SystemTime;
use time::OffsetDateTime;

pub(crate) const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
pub(crate) const ECR_PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";

/// A registry login: what goes into a dockerconfigjson `auths` entry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AuthorizationToken {
    /// Always `AWS` today; taken from the token, not assumed.
    pub username: String,
    pub password: String,
    /// base64("user:password") exactly as ECR sent it: the dockerconfigjson `auth` value.
    pub auth: String,
    /// When ECR says the token stops working (12 h after issue on real ECR). Recorded as
    /// sent, even if already past (moto answers with a date in 2015).
    pub expires_at: OffsetDateTime,
    /// `https://<account>.dkr.ecr.<region>.amazonaws.com` (or `https://public.ecr.aws`).
    pub proxy_endpoint: String,
    /// The host part of `proxy_endpoint`, the dockerconfigjson key.
    pub registry_host: String,
}

impl fmt::Debug for AuthorizationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationToken")
            .field("username", &self.username)
            .field("password", &"** redacted **")
            .field("auth", &"** redacted **")
            .field("expires_at", &self.expires_at)
            .field("registry_host", &self.registry_host)
            .finish()
    }
}

/// Calls GetAuthorizationToken (private or public) with retries for throttling and 5xx.
#[derive(Clone, Debug)]
pub(crate) struct EcrClient {
    http: AwsHttp,
    endpoints: Endpoints,
    retry: RetryPolicy,
}

// === impl EcrClient ===

impl EcrClient {
    pub(crate) fn new(http: AwsHttp, endpoints: Endpoints) -> Self {
        Self {
            http,
            endpoints,
            retry: RetryPolicy::default(),
        }
    }

    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A token for every private registry the principal can reach in `region`.
    pub(crate) async fn authorization_token(
        &self,
        credentials: &Credentials,
        region: &str,
    ) -> Result<AuthorizationToken, AwsError> {
        let endpoint = self.endpoints.ecr(region)?;
        self.retry
            .run(|| async {
                let response = self.call(&endpoint, credentials, ECR_TARGET).await?;
                parse_authorization_response(&response, false)
            })
            .await
    }

    /// A token for `public.ecr.aws` (higher pull rate limits than anonymous pulls).
    pub(crate) async fn public_authorization_token(
        &self,
        credentials: &Credentials,
    ) -> Result<AuthorizationToken, AwsError> {
        let endpoint = self.endpoints.ecr_public();
        self.retry
            .run(|| async {
                let response = self.call(&endpoint, credentials, ECR_PUBLIC_TARGET).await?;
                parse_authorization_response(&response, true)
            })
            .await
    }

    async fn call(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        target: &str,
    ) -> Result<HttpResponse, AwsError> {
        let mut request = http::Request::post(format!("{}/", endpoint.url))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(Bytes::from_static(b"{}"))
            .map_err(|e| AwsError::Signing {
                reason: e.to_string(),
            })?;
        sign_request(
            &mut request,
            credentials,
            endpoint.signing_service,
            &endpoint.signing_region,
            SystemTime::now(),
        )?;
        self.http.send(request).await
    }
}

/// Reads a GetAuthorizationToken answer (or its error). ECR answers
/// `{"authorizationData":[{..}]}`, ECR Public `{"authorizationData":{..}}`.
pub(crate) fn parse_authorization_response(
    response: &HttpResponse,
    public: bool,
) -> Result<AuthorizationToken, AwsError> {
    let service = if public { "ecr-public" } else { "ecr" };
    let status = response.status.as_u16();
    if !response.status.is_success() {
        return Err(error_from_response(
            service,
            status,
            &response.headers,
            &response.body,
        ));
    }
    let bad = |reason: &str| AwsError::Unparseable {
        service,
        status,
        reason: reason.to_string(),
        what: describe_body(&response.headers, &response.body),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let data = match value.get("authorizationData") {
        Some(serde_json::Value::Array(items)) => items.first(),
        Some(obj @ serde_json::Value::Object(_)) => Some(obj),
        _ => None,
    }
    .ok_or_else(|| bad("no authorizationData in the answer"))?;
    let auth = data
        .get("authorizationToken")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("authorizationData has no authorizationToken"))?;
    let (username, password) = decode_token(auth).map_err(bad)?;
    let expires_at = data
        .get("expiresAt")
        .and_then(epoch_seconds)
        .ok_or_else(|| bad("authorizationData has no valid expiresAt"))?;
    let proxy_endpoint = if public {
        data.get("proxyEndpoint")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://{ECR_PUBLIC_REGISTRY}"))
    } else {
        data.get("proxyEndpoint")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("authorizationData has no proxyEndpoint"))?
            .to_string()
    };
    let registry_host = registry_host(&proxy_endpoint).to_string();
    if registry_host.is_empty() {
        return Err(bad("proxyEndpoint has no host"));
    }
    Ok(AuthorizationToken {
        username,
        password,
        auth: auth.to_string(),
        expires_at,
        proxy_endpoint,
        registry_host,
    })
}

/// Checks that `auth` is base64 of `user:password` and splits it. Errors never include
/// the token.
pub(crate) fn decode_token(auth: &str) -> Result<(String, String), &'static str> {
    let raw = STANDARD
        .decode(auth.trim())
        .map_err(|_| "authorizationToken is not base64")?;
    let text = String::from_utf8(raw).map_err(|_| "authorizationToken is not UTF-8 text")?;
    let (user, password) = text
        .split_once(':')
        .ok_or("authorizationToken is not of the form user:password")?;
    if user.is_empty() || password.is_empty() {
        return Err("authorizationToken has an empty user or password");
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::ErrorKind;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn answer(status: u16, body: &str) -> HttpResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn private_answer_gives_user_password_expiry_and_host() {
        let body = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{}","expiresAt":1.7385984915E9,
            "proxyEndpoint":"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}}]}}"#,
            b64("AWS:pa:ss")
        );
        let t = parse_authorization_response(&answer(200, &body), false).unwrap();
        assert_eq!((t.username.as_str(), t.password.as_str()), ("AWS", "pa:ss"));
        assert_eq!(t.auth, b64("AWS:pa:ss"));
        assert_eq!(t.expires_at.unix_timestamp(), 1_738_598_491);
        assert_eq!(
            t.registry_host,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn public_answer_is_an_object_and_defaults_to_public_ecr_aws() {
        let body = format!(
            r#"{{"authorizationData":{{"authorizationToken":"{}","expiresAt":1738598491}}}}"#,
            b64("AWS:pw")
        );
        let t = parse_authorization_response(&answer(200, &body), true).unwrap();
        assert_eq!(t.registry_host, "public.ecr.aws");
        assert_eq!(t.expires_at.unix_timestamp(), 1_738_598_491);
    }

    #[test]
    fn past_expiry_is_recorded_faithfully() {
        let body = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{}","expiresAt":1430000000.0,"proxyEndpoint":"https://1.dkr.ecr.us-east-1.amazonaws.com"}}]}}"#,
            b64("AWS:123456789012-auth-token")
        );
        let t = parse_authorization_response(&answer(200, &body), false).unwrap();
        assert_eq!(t.expires_at.year(), 2015);
    }

    #[test]
    fn invalid_tokens_are_refused_without_echoing_them() {
        for token in [
            "!!!not-base64!!!",
            &b64("no-colon-here"),
            &b64(":nouser"),
            &b64("AWS:"),
        ] {
            let body = format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1,"proxyEndpoint":"https://h"}}]}}"#
            );
            let err = parse_authorization_response(&answer(200, &body), false).unwrap_err();
            assert!(matches!(err, AwsError::Unparseable { .. }), "{err:?}");
            assert!(!err.to_string().contains(token), "{err}");
        }
    }

    #[test]
    fn wrong_shapes_are_unparseable() {
        let ok_token = b64("AWS:pw");
        for body in [
            "",
            "{}",
            r#"{"authorizationData":[]}"#,
            &format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{ok_token}","proxyEndpoint":"https://h"}}]}}"#
            ),
            &format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{ok_token}","expiresAt":"soon","proxyEndpoint":"https://h"}}]}}"#
            ),
            &format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{ok_token}","expiresAt":1}}]}}"#
            ),
            r#"{"authorizationData":[{"authorizationTok"#,
            "<html>proxy login</html>",
        ] {
            let err = parse_authorization_response(&answer(200, body), false).unwrap_err();
            assert!(
                matches!(err, AwsError::Unparseable { status: 200, .. }),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn error_answers_become_typed_errors() {
        let cases = [
            (400, r#"{"__type":"AccessDeniedException","message":"not authorized to perform: ecr:GetAuthorizationToken"}"#, ErrorKind::AccessDenied),
            (400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#, ErrorKind::Throttling),
            (400, r#"{"__type":"ExpiredTokenException","message":"expired"}"#, ErrorKind::ExpiredToken),
            (400, r#"{"__type":"UnrecognizedClientException","message":"bad"}"#, ErrorKind::UnrecognizedClient),
            (403, r#"{"__type":"InvalidSignatureException","message":"sig"}"#, ErrorKind::InvalidSignature),
            (400, r#"{"__type":"RequestExpired","message":"skew"}"#, ErrorKind::RequestExpired),
            (500, r#"{"__type":"ServerException","message":"oops"}"#, ErrorKind::Server),
            (403, "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error></ErrorResponse>", ErrorKind::InvalidSignature),
        ];
        for (status, body, kind) in cases {
            let err = parse_authorization_response(&answer(status, body), false).unwrap_err();
            assert_eq!(err.kind(), Some(kind), "{body}");
        }
    }

    #[test]
    fn debug_redacts_password_and_auth() {
        let t = AuthorizationToken {
            username: "AWS".into(),
            password: "hunter2".into(),
            auth: b64("AWS:hunter2"),
            expires_at: OffsetDateTime::UNIX_EPOCH,
            proxy_endpoint: "https://h".into(),
            registry_host: "h".into(),
        };
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains(&t.auth),
            "{shown}"
        );
    }
}
