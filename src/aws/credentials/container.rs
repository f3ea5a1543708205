//! Container credentials: EKS Pod Identity and ECS task roles. `GET` the full URI with an
//! `Authorization` header holding the token as is (no "Bearer"), read from its file on
//! every call because the agent rotates it.

use crate::aws::env::AwsEnv;
use crate::aws::error::AwsError;
use crate::aws::http::AwsHttp;
use crate::aws::wire::parse_timestamp;
use aws_credential_types::Credentials;
use bytes::Bytes;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

const SOURCE: &str = "container credentials endpoint";
/// ECS's fixed agent address, used with AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
const ECS_HOST: &str = "http://169.254.170.2";

/// Where the authorization token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContainerToken {
    None,
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: read on every call.
    File(PathBuf),
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN. Debug of the enum shows it, so keep it out of
    /// Debug by wrapping.
    Value(Redacted),
}

/// A string whose Debug is redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("** redacted **")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerSource {
    pub uri: String,
    pub token: ContainerToken,
}

// === impl ContainerSource ===

impl ContainerSource {
    /// From AWS_CONTAINER_CREDENTIALS_FULL_URI (or _RELATIVE_URI) and the token settings;
    /// None if neither URI is set.
    pub(crate) fn from_env(env: &AwsEnv) -> Result<Option<Self>, AwsError> {
        let uri = match (
            env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) {
            (Some(rel), _) => format!("{ECS_HOST}{rel}"),
            (None, Some(full)) => {
                check_full_uri(full)?;
                full.to_string()
            }
            (None, None) => return Ok(None),
        };
        let token = if let Some(file) = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            ContainerToken::File(PathBuf::from(file))
        } else if let Some(value) = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            ContainerToken::Value(Redacted(value.to_string()))
        } else {
            ContainerToken::None
        };
        Ok(Some(Self { uri, token }))
    }

    async fn token(&self) -> Result<Option<String>, AwsError> {
        let token = match &self.token {
            ContainerToken::None => return Ok(None),
            ContainerToken::Value(v) => v.0.clone(),
            ContainerToken::File(path) => tokio::fs::read_to_string(path).await.map_err(|e| {
                AwsError::credentials(
                    SOURCE,
                    format!("reading the token file {} failed: {e}", path.display()),
                )
            })?,
        };
        let token = token.trim().to_string();
        if token.contains(['\r', '\n']) {
            return Err(AwsError::credentials(
                SOURCE,
                "the authorization token contains CR or LF",
            ));
        }
        if token.is_empty() {
            return Err(AwsError::credentials(
                SOURCE,
                "the authorization token is empty",
            ));
        }
        Ok(Some(token))
    }

    /// Fetches credentials from the endpoint.
    pub(crate) async fn load(&self, http: &AwsHttp) -> Result<Credentials, AwsError> {
        let mut request = http::Request::get(&self.uri).header("accept", "application/json");
        if let Some(token) = self.token().await? {
            request = request.header("authorization", token);
        }
        let request = request
            .body(Bytes::new())
            .map_err(|e| AwsError::credentials(SOURCE, format!("invalid request: {e}")))?;
        let response = http.send(request).await?;
        if !response.status.is_success() {
            return Err(AwsError::credentials(
                SOURCE,
                format!(
                    "{} answered HTTP {}",
                    crate::aws::http::endpoint_of(&self.uri.parse().unwrap_or_default()),
                    response.status
                ),
            ));
        }
        parse_credentials_json(&response.body, "container-credentials")
            .map_err(|r| AwsError::credentials(SOURCE, r.to_string()))
    }
}

/// The SDKs accept https anywhere, and http only to loopback or the EKS/ECS agent
/// addresses: credentials must not travel in clear over a network.
fn check_full_uri(uri: &str) -> Result<(), AwsError> {
    let parsed: http::Uri = uri.parse().map_err(|e| {
        AwsError::config(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("not a URL: {e}"),
        )
    })?;
    let host = parsed
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let allowed_http = host == "localhost"
        || host.parse::<IpAddr>().is_ok_and(|ip| {
            ip.is_loopback()
                || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
                    .contains(&ip.to_string().as_str())
        });
    match parsed.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allowed_http => Ok(()),
        _ => Err(AwsError::config(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{uri:?} must be https, or http to loopback or the EKS/ECS agent address"),
        )),
    }
}

/// Why a credentials answer (container endpoint or IMDS) was not usable. No variant
/// holds a field's value: only its name, the answer's size, or its `Code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CredentialsJsonError {
    /// The body is not JSON.
    NotJson { bytes: usize },
    /// The answer reports a failure `Code` (anything but `Success`).
    Code(String),
    /// A required field is missing or empty.
    Missing(&'static str),
    /// `Expiration` is not an RFC 3339 time.
    BadExpiration,
}

impl std::fmt::Display for CredentialsJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson { bytes } => write!(f, "answer is not JSON ({bytes} bytes)"),
            Self::Code(code) => write!(f, "answer has Code {code}"),
            Self::Missing(name) => write!(f, "answer has no {name}"),
            Self::BadExpiration => f.write_str("Expiration is not an RFC 3339 time"),
        }
    }
}

impl std::error::Error for CredentialsJsonError {}

/// `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`, shared with IMDS.
pub(crate) fn parse_credentials_json(
    body: &[u8],
    provider_name: &'static str,
) -> Result<Credentials, CredentialsJsonError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| CredentialsJsonError::NotJson { bytes: body.len() })?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(code) = field("Code").filter(|c| *c != "Success") {
        return Err(CredentialsJsonError::Code(code.to_string()));
    }
    let need = |name: &'static str| {
        field(name)
            .map(str::to_string)
            .ok_or(CredentialsJsonError::Missing(name))
    };
    let expiry = match field("Expiration") {
        Some(e) => Some(SystemTime::from(
            parse_timestamp(e).ok_or(CredentialsJsonError::BadExpiration)?,
        )),
        None => None,
    };
    Ok(Credentials::new(
        need("AccessKeyId")?,
        need("SecretAccessKey")?,
        field("Token").map(str::to_string),
        expiry,
        provider_name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uri_must_be_https_or_local() {
        for ok in [
            "https://creds.example/x",
            "http://127.0.0.1:8080/creds",
            "http://169.254.170.23/v1/credentials",
            "http://[::1]:9/x",
            "http://localhost:1/",
        ] {
            assert!(check_full_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/creds",
            "http://evil.example/",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_full_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_file_wins_over_token_value_and_value_is_redacted() {
        let env = AwsEnv::from_pairs(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "inline"),
        ]);
        let s = ContainerSource::from_env(&env).unwrap().unwrap();
        assert!(matches!(s.token, ContainerToken::File(_)));
        let env = AwsEnv::from_pairs(&[
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "inline-secret"),
        ]);
        let s = ContainerSource::from_env(&env).unwrap().unwrap();
        assert_eq!(s.uri, "http://169.254.170.2/v2/creds");
        assert!(!format!("{s:?}").contains("inline-secret"));
        assert_eq!(ContainerSource::from_env(&AwsEnv::default()).unwrap(), None);
    }

    #[test]
    fn credentials_json_with_nanosecond_expiry() {
        let c = parse_credentials_json(
            br#"{"AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-01T00:00:00.123456789Z","AccountId":"1"}"#,
            "x",
        )
        .unwrap();
        assert_eq!(c.session_token(), Some("t"));
        assert!(c.expiry().is_some());
        assert_eq!(
            parse_credentials_json(br#"{"AccessKeyId":"A"}"#, "x")
                .unwrap_err()
                .to_string(),
            "answer has no SecretAccessKey"
        );
        assert!(
            parse_credentials_json(br#"{"Code":"Failure","AccessKeyId":"A"}"#, "x")
                .unwrap_err()
                .to_string()
                .contains("Failure")
        );
        assert!(parse_credentials_json(b"<html>", "x").is_err());
    }
}
