//! The registry's own front door: `GET /v2/` with the ECR token, the first call a
//! container runtime makes before a pull. A 200 there proves the Secret we wrote opens
//! the registry; nothing else in the field checks it.
//!
//! Private ECR takes `Basic base64("AWS:<password>")` directly. ECR Public (and any
//! registry using the distribution token flow) answers 401 with a `Bearer` challenge: the
//! same Basic credential then buys a bearer token at the challenge's realm, and `/v2/` is
//! asked again with it. The credential is only ever sent to the registry's own host.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};

use std::time::Duration;

use super::error::AwsError;
use super::http::{AwsHttp, HttpResponse};

/// Why a registry did not accept the token. Messages never hold the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CheckError {
    /// 401: the registry refused the credential.
    Unauthorized(String),
    /// 403: the credential is valid but the principal may not pull
    /// (`ecr:BatchGetImage` and friends missing).
    Forbidden(String),
    /// DNS, TCP, proxy or timeout: no answer.
    Unreachable(String),
    /// The registry's certificate is not trusted (or names another host).
    Tls(String),
    /// An answer no registry gives (another status, a malformed challenge, a token
    /// realm on a foreign host).
    UnexpectedAnswer(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthorized(m)
            | Self::Forbidden(m)
            | Self::Unreachable(m)
            | Self::Tls(m)
            | Self::UnexpectedAnswer(m) => f.write_str(m),
        }
    }
}

/// A check is one small GET (two more for a bearer token): a registry that has not
/// answered in this long is reported unreachable rather than holding a reconcile.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks registries over the operator's AWS transport (its pool, proxies and roots).
#[derive(Clone, Debug)]
pub(crate) struct RegistryClient {
    http: AwsHttp,
    /// `ECR_REGISTRY_ENDPOINT_URL`: every registry is reached here instead (tests, private
    /// networks that front ECR under another name).
    endpoint: Option<Uri>,
}

// === impl RegistryClient ===

impl RegistryClient {
    /// `endpoint` must be an absolute `https://` URL without a path, or `http://` to a
    /// loopback host.
    #[cfg(test)]
    pub(crate) fn new(http: AwsHttp, endpoint: Option<&str>) -> Result<Self, AwsError> {
        Self::configure(http, endpoint, false)
    }

    /// As [`RegistryClient::new`]; `allow_plain_http` also takes `http://` to any host.
    /// Every check sends an ECR password as Basic auth, readable by anyone on the path of
    /// plain http: the same rule as `--token-file`'s token.
    pub(crate) fn configure(
        http: AwsHttp,
        endpoint: Option<&str>,
        allow_plain_http: bool,
    ) -> Result<Self, AwsError> {
        let endpoint = match endpoint {
            None => None,
            Some(raw) => {
                let uri: Uri = raw
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|e| AwsError::config("ECR_REGISTRY_ENDPOINT_URL", format!("{e}")))?;
                let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
                if !scheme_ok || uri.authority().is_none() || uri.path().len() > 1 {
                    return Err(AwsError::config(
                        "ECR_REGISTRY_ENDPOINT_URL",
                        "expected http(s)://host[:port] without a path",
                    ));
                }
                if uri.scheme_str() == Some("http") && !allow_plain_http && !is_loopback(&uri) {
                    // The URL is not repeated: it may carry a user and password.
                    return Err(AwsError::config(
                        "ECR_REGISTRY_ENDPOINT_URL",
                        "plain http:// to a host other than loopback would send every ECR password in cleartext; use https://, a loopback host, or --allow-plain-http-registry",
                    ));
                }
                Some(uri)
            }
        };
        Ok(Self { http, endpoint })
    }

    /// Whether `host` accepts `username:password` for a pull.
    pub(crate) async fn check(
        &self,
        host: &str,
        username: &str,
        password: &str,
    ) -> Result<(), CheckError> {
        let base = match &self.endpoint {
            Some(uri) => uri.to_string().trim_end_matches('/').to_string(),
            None => format!("https://{host}"),
        };
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{username}:{password}"))
        );
        let v2 = format!("{base}/v2/");
        let first = self.get(&v2, &basic).await?;
        if first.status != StatusCode::UNAUTHORIZED {
            return verdict(&first);
        }
        let Some(challenge) = bearer_challenge(&first) else {
            return verdict(&first);
        };
        let realm = token_url(&base, &challenge)?;
        let answer = self.get(&realm, &basic).await?;
        if !answer.status.is_success() {
            return verdict(&answer);
        }
        let token = bearer_token(&answer.body)?;
        verdict(&self.get(&v2, &format!("Bearer {token}")).await?)
    }

    async fn get(&self, url: &str, authorization: &str) -> Result<HttpResponse, CheckError> {
        let request = Request::get(url)
            .header(header::AUTHORIZATION, authorization)
            .body(Bytes::new())
            .map_err(|e| CheckError::UnexpectedAnswer(format!("building the request: {e}")))?;
        let answer = tokio::time::timeout(CHECK_TIMEOUT, self.http.send(request))
            .await
            .map_err(|_| {
                CheckError::Unreachable(format!("no answer within {}s", CHECK_TIMEOUT.as_secs()))
            })?;
        answer.map_err(|e| match e {
            AwsError::Tls { .. } => CheckError::Tls(e.to_string()),
            AwsError::Config { .. } => CheckError::UnexpectedAnswer(e.to_string()),
            _ => CheckError::Unreachable(e.to_string()),
        })
    }
}

/// 200 is the proof; 401 and 403 are the registry's word on the credential.
/// `localhost` or a loopback address: plain http there never leaves the machine.
fn is_loopback(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn verdict(answer: &HttpResponse) -> Result<(), CheckError> {
    match answer.status {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED => Err(CheckError::Unauthorized(
            "the registry answered 401 Unauthorized to the token".into(),
        )),
        StatusCode::FORBIDDEN => Err(CheckError::Forbidden(
            "the registry answered 403 Forbidden: the principal may not pull (grant ecr:BatchGetImage and ecr:GetDownloadUrlForLayer)".into(),
        )),
        s => Err(CheckError::UnexpectedAnswer(format!(
            "the registry answered HTTP {s} to GET /v2/"
        ))),
    }
}

/// The parameters of a `WWW-Authenticate: Bearer realm="...",service="..."` challenge.
#[derive(Debug, Default, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

fn bearer_challenge(answer: &HttpResponse) -> Option<Challenge> {
    answer
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_bearer)
}

/// Parses `Bearer k="v",k2="v2"` (quoted or bare values); `None` for other schemes.
fn parse_bearer(value: &str) -> Option<Challenge> {
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut challenge = Challenge::default();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(',').unwrap_or(after.len())),
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => challenge.realm = value.to_string(),
            "service" => challenge.service = Some(value.to_string()),
            "scope" => challenge.scope = Some(value.to_string()),
            _ => {}
        }
        rest = after.trim_start_matches([',', ' ']);
    }
    (!challenge.realm.is_empty()).then_some(challenge)
}

/// The token URL of `challenge`, only on the registry's own scheme and authority: a
/// challenge pointing elsewhere would make us hand the ECR credential to a stranger.
fn token_url(base: &str, challenge: &Challenge) -> Result<String, CheckError> {
    let base: Uri = base
        .parse()
        .map_err(|_| CheckError::UnexpectedAnswer("registry URL unparseable".into()))?;
    let realm: Uri = challenge.realm.parse().map_err(|_| {
        CheckError::UnexpectedAnswer("the registry's token realm is not a URL".into())
    })?;
    if realm.scheme() != base.scheme() || realm.authority() != base.authority() {
        return Err(CheckError::UnexpectedAnswer(format!(
            "the registry sends tokens from {}, another host: the credential is not sent there",
            super::http::endpoint_of(&realm)
        )));
    }
    let mut query = Vec::new();
    for (key, value) in [("service", &challenge.service), ("scope", &challenge.scope)] {
        if let Some(v) = value {
            query.push(format!("{key}={}", query_escape(v)));
        }
    }
    let mut url = challenge.realm.clone();
    if !query.is_empty() {
        url.push(if realm.query().is_some() { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    Ok(url)
}

/// Percent-encodes everything but the URL-safe unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{"token": ...}` or `{"access_token": ...}`, as the distribution spec allows.
fn bearer_token(body: &[u8]) -> Result<String, CheckError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        CheckError::UnexpectedAnswer("the registry's token answer is not JSON".into())
    })?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            CheckError::UnexpectedAnswer("the registry's token answer holds no usable token".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_quoted_and_bare_values() {
        let c = parse_bearer(
            r#"Bearer realm="https://public.ecr.aws/token/",service="public.ecr.aws",scope="aws""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://public.ecr.aws/token/");
        assert_eq!(c.service.as_deref(), Some("public.ecr.aws"));
        assert_eq!(c.scope.as_deref(), Some("aws"));
        let bare = parse_bearer("bearer realm=https://r/t, service=s").unwrap();
        assert_eq!(bare.realm, "https://r/t");
        assert_eq!(bare.service.as_deref(), Some("s"));
        assert!(parse_bearer(r#"Basic realm="x""#).is_none());
        assert!(parse_bearer(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_bearer("Bearer service=\"no-realm\"").is_none());
    }

    #[test]
    fn token_realm_must_be_the_registrys_own_host() {
        let c = Challenge {
            realm: "https://public.ecr.aws/token/".into(),
            service: Some("public.ecr.aws".into()),
            scope: Some("repository:a b:pull".into()),
        };
        assert_eq!(
            token_url("https://public.ecr.aws", &c).unwrap(),
            "https://public.ecr.aws/token/?service=public.ecr.aws&scope=repository%3Aa%20b%3Apull"
        );
        let foreign = Challenge {
            realm: "https://evil.example/token".into(),
            ..Challenge::default()
        };
        assert!(matches!(
            token_url("https://public.ecr.aws", &foreign),
            Err(CheckError::UnexpectedAnswer(_))
        ));
        let downgrade = Challenge {
            realm: "http://public.ecr.aws/token".into(),
            ..Challenge::default()
        };
        assert!(token_url("https://public.ecr.aws", &downgrade).is_err());
    }

    #[test]
    fn token_answers_need_a_printable_token() {
        assert_eq!(bearer_token(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(bearer_token(br#"{"access_token":"xyz"}"#).unwrap(), "xyz");
        assert!(bearer_token(br#"{"token":""}"#).is_err());
        assert!(bearer_token(b"{\"token\":\"a\\r\\nInjected: 1\"}").is_err());
        assert!(bearer_token(b"<html>").is_err());
    }

    #[test]
    fn the_override_must_be_a_bare_http_url() {
        let http = AwsHttp::new(&super::super::env::AwsEnv::default(), Default::default()).unwrap();
        assert!(RegistryClient::new(http.clone(), Some("https://127.0.0.1:5000/")).is_ok());
        assert!(RegistryClient::new(http.clone(), Some("ftp://x")).is_err());
        assert!(RegistryClient::new(http.clone(), Some("https://x/v2")).is_err());
        assert!(RegistryClient::new(http.clone(), Some("not a url")).is_err());
        for loopback in [
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "http://[::1]:5000",
        ] {
            assert!(
                RegistryClient::new(http.clone(), Some(loopback)).is_ok(),
                "{loopback}"
            );
        }
        let err = RegistryClient::new(http.clone(), Some("http://u:pw-123@10.0.0.5:5000"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ECR_REGISTRY_ENDPOINT_URL")
                && err.contains("--allow-plain-http-registry"),
            "{err}"
        );
        assert!(!err.contains("pw-123"), "{err}");
        assert!(RegistryClient::configure(http, Some("http://10.0.0.5:5000"), true).is_ok());
    }
}
