//! What a token is to the decisions: the group it serves (and which groups a spec
//! needs), the token itself, and when it is due for replacement. Fetching and caching
//! tokens is `tokens`' business.

use std::collections::BTreeSet;
use std::time::Duration;

use time::OffsetDateTime;

use super::spec::AwsAuth;
use super::validate::ValidSpec;
use crate::reconcile::vocab::saturating_add;

/// What one token serves: every registry the principal reaches in one region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TokenGroup {
    pub region: String,
    /// ECR Public's token comes from another API.
    pub public: bool,
    /// The per-CR identity on top of the operator's default credentials.
    pub auth: AwsAuth,
}

/// A fetched ECR token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RegistryToken {
    pub username: String,
    pub password: String,
    /// base64("username:password"), as ECR returns it.
    pub auth: String,
    pub expires_at: OffsetDateTime,
    pub fetched_at: OffsetDateTime,
    /// The registry of the caller's own account (`proxyEndpoint`), if given.
    pub registry_host: Option<String>,
}

impl std::fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryToken")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("registry_host", &self.registry_host)
            .finish()
    }
}

/// When a token should be replaced: `margin` before expiry (default half the lifetime),
/// but never sooner than `min_interval` after it was fetched. Saturating throughout: the
/// expiry comes from AWS and the durations from a CR, so no value may overflow.
pub(crate) fn refresh_at(
    token: &RegistryToken,
    margin: Option<Duration>,
    min_interval: Duration,
) -> OffsetDateTime {
    let margin = match margin {
        Some(m) => time::Duration::try_from(m).unwrap_or(time::Duration::MAX),
        None => (token.expires_at - token.fetched_at) / 2,
    };
    let due = token
        .expires_at
        .checked_sub(margin)
        .unwrap_or(token.fetched_at);
    due.max(saturating_add(token.fetched_at, min_interval))
}

/// The token groups a spec needs: one per (region, public) of its registries, or the
/// region's own registry when it names none. `None` when no region is known at all.
pub(crate) fn token_groups(
    spec: &ValidSpec,
    default_region: Option<&str>,
) -> Option<Vec<TokenGroup>> {
    let mut groups = BTreeSet::new();
    if spec.registries.is_empty() {
        let region = spec.region.as_deref().or(default_region)?;
        groups.insert(TokenGroup {
            region: region.to_string(),
            public: false,
            auth: spec.aws.clone(),
        });
    }
    for r in &spec.registries {
        groups.insert(TokenGroup {
            region: r.region.clone(),
            public: r.public,
            auth: spec.aws.clone(),
        });
    }
    Some(groups.into_iter().collect())
}
