//! From tokens to what a managed Secret holds: the `.dockerconfigjson` payload, the hosts
//! it covers, and the refresh point and expiry it was computed from. Pure: the same tokens
//! always give the same bytes, so an unchanged token writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::dockerconfig::{self, AuthEntry};
use super::registry::RegistryHost;
use super::token::{refresh_at, RegistryToken, TokenGroup};
use super::validate::ValidSpec;
use crate::reconcile::vocab::{self, Owner};

/// The payload of one CR's Secrets for the tokens at hand.
#[derive(Clone)]
pub(crate) struct Content {
    /// The base64 `.dockerconfigjson` value.
    pub data: String,
    /// The hosts it covers, sorted.
    pub hosts: Vec<String>,
    /// The entries by host, for merging into a shared Secret.
    pub entries: BTreeMap<String, AuthEntry>,
    pub checksum: String,
    /// Earliest refresh point and expiry over the tokens it holds.
    pub refresh_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("hosts", &self.hosts)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no payload could be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContentError {
    /// The spec names no registry and the token named none either.
    NoRegistry,
    /// A registry's token group was not fetched (a bug: groups come from the same spec).
    NoToken(String),
}

impl std::fmt::Display for ContentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentError::NoRegistry => {
                f.write_str("the ECR answer named no registry (proxyEndpoint); set spec.registries")
            }
            ContentError::NoToken(host) => write!(f, "no token for registry {host}"),
        }
    }
}

impl std::error::Error for ContentError {}

/// Each registry host of `spec` with the token that serves it: the spec's registries, or
/// the token's own registry when it names none.
pub(crate) fn host_tokens<'a>(
    spec: &ValidSpec,
    tokens: &'a BTreeMap<TokenGroup, Arc<RegistryToken>>,
) -> Result<Vec<(String, &'a Arc<RegistryToken>)>, ContentError> {
    if spec.registries.is_empty() {
        let (_, token) = tokens.iter().next().ok_or(ContentError::NoRegistry)?;
        let host = token
            .registry_host
            .as_deref()
            .and_then(RegistryHost::from_proxy_endpoint)
            .ok_or(ContentError::NoRegistry)?;
        Ok(vec![(host.host, token)])
    } else {
        let mut out = Vec::new();
        for r in &spec.registries {
            let (_, token) = tokens
                .iter()
                .find(|(g, _)| g.region == r.region && g.public == r.public)
                .ok_or_else(|| ContentError::NoToken(r.host.clone()))?;
            out.push((r.host.clone(), token));
        }
        Ok(out)
    }
}

/// The payload for `spec` from the fetched `tokens`.
pub(crate) fn build(
    spec: &ValidSpec,
    tokens: &BTreeMap<TokenGroup, Arc<RegistryToken>>,
) -> Result<Content, ContentError> {
    let registries = host_tokens(spec, tokens)?;
    let mut entries = BTreeMap::new();
    let mut earliest: Option<(OffsetDateTime, OffsetDateTime)> = None;
    for (host, token) in &registries {
        entries.insert(
            host.clone(),
            AuthEntry {
                username: token.username.clone(),
                password: token.password.clone(),
                auth: token.auth.clone(),
            },
        );
        let r = refresh_at(token, spec.before_expiry, spec.min_interval);
        earliest = Some(match earliest {
            None => (r, token.expires_at),
            Some((er, ee)) => (er.min(r), ee.min(token.expires_at)),
        });
    }
    let (refresh_at, expires_at) = earliest.ok_or(ContentError::NoRegistry)?;
    let data = dockerconfig::encode(&entries);
    Ok(Content {
        checksum: dockerconfig::checksum(&data),
        hosts: entries.keys().cloned().collect(),
        entries,
        data,
        refresh_at,
        expires_at,
    })
}

/// The annotations a managed Secret carries: who owns it, and what it holds until when.
pub(crate) fn annotations(owner: &Owner, content: &Content) -> BTreeMap<String, String> {
    BTreeMap::from([
        (vocab::OWNER_ANNOTATION.to_string(), owner.name.clone()),
        (vocab::OWNER_UID_ANNOTATION.to_string(), owner.uid.clone()),
        (
            vocab::EXPIRES_ANNOTATION.to_string(),
            vocab::format_time(content.expires_at),
        ),
        (
            vocab::REFRESH_ANNOTATION.to_string(),
            vocab::format_time(content.refresh_at),
        ),
        (
            vocab::REGISTRIES_ANNOTATION.to_string(),
            content.hosts.join(","),
        ),
        (
            vocab::CHECKSUM_ANNOTATION.to_string(),
            content.checksum.clone(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::decide::spec::Spec;
    use crate::reconcile::decide::token::token_groups;
    use crate::reconcile::decide::validate::SpecPolicy;

    const T0: OffsetDateTime = time::macros::datetime!(2026-11-26 12:00 UTC);

    fn spec(json: serde_json::Value) -> ValidSpec {
        serde_json::from_value::<Spec>(json)
            .unwrap()
            .validate(&SpecPolicy::default())
            .unwrap()
    }

    fn token(hours: i64, host: Option<&str>) -> Arc<RegistryToken> {
        Arc::new(RegistryToken {
            username: "AWS".into(),
            password: format!("pw{hours}"),
            auth: "QVdTOnB3".into(),
            fetched_at: T0,
            expires_at: T0 + time::Duration::hours(hours),
            registry_host: host.map(str::to_string),
        })
    }

    #[test]
    fn registries_of_two_regions_take_the_earliest_expiry_and_sorted_hosts() {
        let spec = spec(
            serde_json::json!({"secretName": "s", "namespaces": ["a"], "registries": [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"]}),
        );
        let groups = token_groups(&spec, None).unwrap();
        assert_eq!(groups.len(), 2);
        let tokens: BTreeMap<_, _> = groups
            .into_iter()
            .map(|g| {
                let hours = if g.region == "eu-west-1" { 6 } else { 12 };
                (g, token(hours, None))
            })
            .collect();
        let c = build(&spec, &tokens).unwrap();
        assert_eq!(c.expires_at, T0 + time::Duration::hours(6));
        assert_eq!(
            c.hosts,
            [
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com"
            ]
        );
        assert_eq!(build(&spec, &tokens).unwrap().data, c.data, "deterministic");
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn without_registries_the_tokens_own_registry_is_used_or_the_error_says_so() {
        let spec = spec(serde_json::json!({"secretName": "s", "namespaces": ["a"]}));
        assert!(token_groups(&spec, None).is_none(), "no region anywhere");
        let groups = token_groups(&spec, Some("us-east-1")).unwrap();
        let with_host = BTreeMap::from([(
            groups[0].clone(),
            token(
                12,
                Some("https://123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ),
        )]);
        assert_eq!(
            build(&spec, &with_host).unwrap().hosts,
            ["123456789012.dkr.ecr.us-east-1.amazonaws.com"]
        );
        let without = BTreeMap::from([(groups[0].clone(), token(12, None))]);
        assert_eq!(
            build(&spec, &without).unwrap_err(),
            ContentError::NoRegistry
        );
    }
}
