//! EC2 instance profile credentials through IMDSv2: a session token from
//! `PUT /latest/api/token`, then the role name, then the role's credentials.

use super::container::parse_credentials_json;
use crate::aws::env::AwsEnv;
use crate::aws::error::AwsError;
use crate::aws::http::AwsHttp;
use aws_credential_types::Credentials;
use bytes::Bytes;

const SOURCE: &str = "EC2 instance metadata (IMDSv2)";
pub(crate) const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// IMDS is link-local and answers in milliseconds; off EC2 the address is a black hole,
/// and the chain should move on quickly (the SDKs use 1 s).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Six hours, the SDK default; we ask for a new session token on every load anyway.
const TOKEN_TTL_SECONDS: &str = "21600";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImdsSource {
    pub endpoint: String,
}

// === impl ImdsSource ===

impl ImdsSource {
    /// None when AWS_EC2_METADATA_DISABLED=true.
    pub(crate) fn from_env(env: &AwsEnv) -> Option<Self> {
        if env.flag("AWS_EC2_METADATA_DISABLED") {
            return None;
        }
        let endpoint = env
            .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_string();
        Some(Self { endpoint })
    }

    async fn call(
        &self,
        http: &AwsHttp,
        request: http::request::Builder,
        what: &str,
    ) -> Result<String, AwsError> {
        let request = request
            .body(Bytes::new())
            .map_err(|e| AwsError::credentials(SOURCE, format!("invalid request: {e}")))?;
        let unreachable = |reason: String| {
            AwsError::credentials(
                SOURCE,
                format!("{what} failed (is this an EC2 node with IMDS reachable, hop limit >= 2?): {reason}"),
            )
        };
        let response = tokio::time::timeout(CALL_TIMEOUT, http.send(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        if !response.status.is_success() {
            return Err(AwsError::credentials(
                SOURCE,
                format!("{what} answered HTTP {}", response.status),
            ));
        }
        String::from_utf8(response.body.to_vec())
            .map_err(|_| AwsError::credentials(SOURCE, format!("{what} answer is not text")))
    }

    pub(crate) async fn load(&self, http: &AwsHttp) -> Result<Credentials, AwsError> {
        let token = self
            .call(
                http,
                http::Request::put(format!("{}/latest/api/token", self.endpoint))
                    .header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS),
                "getting a session token",
            )
            .await?;
        let token = token.trim();
        let roles = self
            .call(
                http,
                http::Request::get(format!("{}{CREDENTIALS_PATH}", self.endpoint))
                    .header("x-aws-ec2-metadata-token", token),
                "listing the instance profile role",
            )
            .await?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| {
                AwsError::credentials(SOURCE, "the instance has no instance profile role")
            })?;
        if role.contains(['/', '?', '#']) {
            return Err(AwsError::credentials(
                SOURCE,
                "the role name from IMDS is not a plain name",
            ));
        }
        let body = self
            .call(
                http,
                http::Request::get(format!("{}{CREDENTIALS_PATH}{role}", self.endpoint))
                    .header("x-aws-ec2-metadata-token", token),
                "getting the role credentials",
            )
            .await?;
        parse_credentials_json(body.as_bytes(), "imds")
            .map_err(|r| AwsError::credentials(SOURCE, r.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_override_and_disable_flag() {
        assert_eq!(
            ImdsSource::from_env(&AwsEnv::default()).unwrap().endpoint,
            DEFAULT_ENDPOINT
        );
        let env = AwsEnv::from_pairs(&[(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://[fd00:ec2::254]/",
        )]);
        assert_eq!(
            ImdsSource::from_env(&env).unwrap().endpoint,
            "http://[fd00:ec2::254]"
        );
        let env = AwsEnv::from_pairs(&[("AWS_EC2_METADATA_DISABLED", "true")]);
        assert_eq!(ImdsSource::from_env(&env), None);
    }
}
