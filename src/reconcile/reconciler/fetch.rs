//! The third stage of a reconcile: the tokens a decided step's writes need, and what the
//! registries say of them. A token is fetched (or taken from the shared cache) only when
//! a write needs one and the CR may use its credentials; the registries are asked of
//! the tokens in hand, fetched or cached, never with an AWS call just to check.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::super::decide::content::{self, Content};
use super::super::decide::spec::CredentialSourceStatus;
use super::super::decide::status::Verification;
use super::super::decide::step::{Apply, Chore, Step};
use super::super::execute::writes::SecretContent;
use super::super::tokens::{FetchToken, RegistryToken, TokenCache, TokenGroup};
use super::super::verify::Verifier;
use super::super::vocab::Reason;

/// The tokens a reconcile holds, by group.
type Tokens = BTreeMap<TokenGroup, Arc<RegistryToken>>;

/// A decided step with what its writes need in hand.
pub(super) enum Armed {
    /// Not a live CR's step: no token to fetch.
    Chore(Box<Chore>),
    /// A live CR's step and its tokens.
    Apply(Box<Apply>, Supply),
}

/// The tokens of one live CR's step.
pub(super) enum Supply {
    /// No token may or could be had: why, and what the status says of the registries.
    Without {
        why: (Reason, String),
        verification: Option<Verification>,
    },
    /// The tokens the writes need were fetched (`fetched`), or none were needed.
    /// `verification` is `None` while a check is pending (the last result stands), and
    /// `retry` the time a failed check is asked again.
    With {
        fetched: Option<Box<Fetched>>,
        verification: Option<Verification>,
        retry: Option<OffsetDateTime>,
    },
}

/// Fresh tokens, as the Secrets hold them.
pub(super) struct Fetched {
    pub content: Content,
    pub secret: SecretContent,
    /// Which credentials served each host's token, for the status.
    pub sources: Vec<CredentialSourceStatus>,
}

/// Arms decided steps with tokens, and asks the registries of them.
pub(super) struct Supplier<F> {
    pub(super) tokens: Arc<TokenCache<F>>,
    /// Registry checks, cached per token and host.
    pub(super) verifier: Arc<Verifier>,
}

impl<F: FetchToken> Supplier<F> {
    /// Arms `step` with the tokens it needs.
    pub(super) async fn arm(&self, step: Step, now: OffsetDateTime) -> Armed {
        let step = match step {
            Step::Apply(step) => step,
            Step::Chore(chore) => return Armed::Chore(chore),
        };
        let supply = match &step.permission {
            // A CR not (or no longer) granted its credentials gets no token and no
            // registry check.
            Err(why) => Supply::Without {
                why: why.clone(),
                verification: Some(Verification::Withheld),
            },
            Ok(()) => match self.supply(&step, now).await {
                Ok(supply) => supply,
                Err(why) => Supply::Without {
                    why,
                    verification: None,
                },
            },
        };
        Armed::Apply(step, supply)
    }

    /// The tokens `step`'s writes need (fetched only when a write needs one), the
    /// Secret content they make, and the registries' word on the tokens in hand.
    async fn supply(&self, step: &Apply, now: OffsetDateTime) -> Result<Supply, (Reason, String)> {
        let fetched = match step.plan.needs_token() {
            true => Some(self.fetch_tokens(step, now).await?),
            false => None,
        };
        let cached = match fetched {
            Some(_) => None,
            None => self.cached_tokens(step),
        };
        let spec = &step.spec;
        let tokens = fetched.as_ref().or(cached.as_ref());
        let hosts = tokens.and_then(|t| content::host_tokens(spec, t).ok());
        let content = match &fetched {
            Some(tokens) => {
                Some(content::build(spec, tokens).map_err(|e| (Reason::AwsError, e.to_string()))?)
            }
            None => None,
        };
        let (verification, retry) = if !spec.verify || !self.verifier.is_enabled() {
            (Some(Verification::Disabled), None)
        } else {
            let checked =
                (hosts.as_deref()).and_then(|h| self.verifier.verdicts(&step.owner.name, h, now));
            match checked {
                Some((checks, retry)) => (Some(Verification::Checked(checks)), retry),
                None => (None, None),
            }
        };
        let fetched = content.map(|content| {
            let source = self.tokens.fetcher().credential_source(&spec.aws);
            let mut sources: Vec<_> = (hosts.unwrap_or_default().into_iter())
                .map(|(host, _)| CredentialSourceStatus {
                    host,
                    source: source.clone(),
                })
                .collect();
            sources.sort_by(|a, b| a.host.cmp(&b.host));
            let secret = SecretContent::new(&step.owner, &spec.secret_name, &content);
            Box::new(Fetched {
                content,
                secret,
                sources,
            })
        });
        Ok(Supply::With {
            fetched,
            verification,
            retry,
        })
    }

    /// One token per group the CR needs, from the shared cache.
    async fn fetch_tokens(
        &self,
        step: &Apply,
        now: OffsetDateTime,
    ) -> Result<Tokens, (Reason, String)> {
        let groups = step.groups.as_ref().ok_or((
            Reason::InvalidSpec,
            "no region: set spec.region or spec.registries, or AWS_REGION for the operator"
                .to_string(),
        ))?;
        let spec = &step.spec;
        let mut out = BTreeMap::new();
        for group in groups {
            let token = self
                .tokens
                .token(group, spec.before_expiry, spec.min_interval, now)
                .await
                .map_err(|e| (e.reason, e.message))?;
            out.insert(group.clone(), token);
        }
        Ok(out)
    }

    /// The tokens the cache holds for every group of `step`; `None` when one is missing.
    fn cached_tokens(&self, step: &Apply) -> Option<Tokens> {
        let groups = step.groups.as_deref().unwrap_or_default();
        groups
            .iter()
            .map(|g| Some((g.clone(), self.tokens.cached(g)?)))
            .collect()
    }
}
