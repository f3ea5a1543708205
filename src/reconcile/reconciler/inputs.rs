//! What a reconcile reads beyond the caches' plan: the tokens (once the CR may use its
//! credentials), the shared Secrets and rival claims of a merge, and the registries'
//! answers to the tokens. Each is a method of [`Reconciler`], kept apart from the
//! orchestration in `reconciler.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use time::OffsetDateTime;

use super::super::decide::content::{self, Content};
use super::super::decide::plan::{self, Plan, Rival};
use super::super::decide::select::{self, NamespaceView};
use super::super::decide::shared::SharedSecret;
use super::super::decide::spec::{CredentialSourceStatus, EcrPullSecret, SecretPolicy, SecretRef};
use super::super::decide::status::{Outcome, Verification};
use super::super::decide::validate::ValidSpec;
use super::super::execute::writes::SecretContent;
use super::super::tokens::FetchToken;
use super::super::verify::Lookup;
use super::super::vocab::{Owner, Reason, GRANT_ANNOTATION, ROLE_GRANTS_CONFIGMAP};
use super::{ObservedState, ReconcileError, Reconciler, Tokens};

impl<F: FetchToken, S: ObservedState> Reconciler<F, S> {
    /// The registries' word on the tokens `spec` uses: those just fetched, else those
    /// the cache holds (no AWS call just to check). Each (host, token) is asked once, on
    /// a task of its own; a failure again after its backoff, whose time comes back to
    /// requeue by. `None` while a verdict is pending (the CR is requeued when it lands)
    /// or no token is at hand: the last result stands.
    pub(super) fn verify(
        &self,
        cr: &str,
        spec: &ValidSpec,
        fetched: Option<&Tokens>,
        now: OffsetDateTime,
    ) -> (Option<Verification>, Option<OffsetDateTime>) {
        if !spec.verify || !self.verifier.is_enabled() {
            return (Some(Verification::Disabled), None);
        }
        let cached;
        let tokens = match fetched {
            Some(tokens) => tokens,
            None => {
                let groups = content::token_groups(spec, self.settings.default_region.as_deref());
                let Some(found) = groups
                    .unwrap_or_default()
                    .into_iter()
                    .map(|g| Some((g.clone(), self.tokens.cached(&g)?)))
                    .collect::<Option<Tokens>>()
                else {
                    return (None, None);
                };
                cached = found;
                &cached
            }
        };
        let Ok(hosts) = content::host_tokens(spec, tokens) else {
            return (None, None);
        };
        // Every host is looked up (starting its check) before any answer is judged.
        let lookups: Vec<Option<Lookup>> = hosts
            .into_iter()
            .map(|(host, token)| self.verifier.lookup(cr, &host, token, now))
            .collect();
        let mut results = Vec::new();
        for lookup in lookups {
            match lookup {
                Some(Lookup::Known(check)) => results.push(check),
                Some(Lookup::Pending) | None => return (None, None),
            }
        }
        if results.is_empty() {
            return (None, None);
        }
        results.sort_by(|a, b| a.host.cmp(&b.host));
        let retry = results.iter().filter_map(|c| c.retry_at).min();
        (Some(Verification::Checked(results)), retry)
    }

    /// Which credentials served each host's token, for the status.
    pub(super) fn credential_sources(
        &self,
        spec: &ValidSpec,
        tokens: &Tokens,
    ) -> Vec<CredentialSourceStatus> {
        let source = self.tokens.fetcher().credential_source(&spec.aws);
        let mut out: Vec<CredentialSourceStatus> = content::host_tokens(spec, tokens)
            .unwrap_or_default()
            .into_iter()
            .map(|(host, _)| CredentialSourceStatus {
                host,
                source: source.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    /// The expiry metric of the certificate CR `cr` signs with, once it may use it (an
    /// expired one included: that is what the alert is for).
    pub(super) fn report_certificate(&self, cr: &str, spec: &ValidSpec) {
        match self.tokens.fetcher().certificate_not_after(&spec.aws) {
            Some(t) => {
                self.metrics
                    .set_certificate_expiry(cr, "roles-anywhere", t.unix_timestamp() as f64)
            }
            None => self.metrics.forget_certificate_expiry(cr),
        }
    }

    /// The tokens and the Secret payload for `spec`, or why there are none.
    pub(super) async fn payload(
        &self,
        owner: &Owner,
        spec: &ValidSpec,
        now: OffsetDateTime,
    ) -> Result<(Tokens, Content, SecretContent), (Reason, String)> {
        let tokens = self.fetch_tokens(&owner.name, spec, now).await;
        // After the fetch: a certificate Secret first watched by it has been read now.
        self.report_certificate(&owner.name, spec);
        let tokens = tokens?;
        let content =
            content::build(spec, &tokens).map_err(|e| (Reason::AwsError, e.to_string()))?;
        let secret = SecretContent::new(owner, &spec.secret_name, &content);
        Ok((tokens, content, secret))
    }

    /// One token per group the CR needs, from the shared cache, once the CR is known to
    /// be allowed its credentials.
    pub(super) async fn fetch_tokens(
        &self,
        cr: &str,
        spec: &ValidSpec,
        now: OffsetDateTime,
    ) -> Result<Tokens, (Reason, String)> {
        let groups =
            content::token_groups(spec, self.settings.default_region.as_deref()).ok_or((
                Reason::InvalidSpec,
                "no region: set spec.region or spec.registries, or AWS_REGION for the operator"
                    .to_string(),
            ))?;
        self.permitted(cr, spec).await?;
        let mut out = BTreeMap::new();
        for group in groups {
            let token = self
                .tokens
                .token(&group, spec.before_expiry, spec.min_interval, now)
                .await
                .map_err(|e| (e.reason, e.message))?;
            out.insert(group, token);
        }
        Ok(out)
    }

    /// The shared Secrets a merge CR's plan reads: those of its name, and any other
    /// still holding its hosts. An error (to retry) while the watch has not listed.
    pub(super) async fn shared_secrets(
        &self,
        cr: &EcrPullSecret,
        owner: &Owner,
        name: &str,
    ) -> Result<Vec<Arc<SharedSecret>>, ReconcileError> {
        let Some(mut shared) = self.state.shared_secrets(name).await else {
            let outcome = Outcome {
                fatal: Some((
                    Reason::WriteFailed,
                    format!("the Secrets named {name} could not be listed yet; retrying"),
                )),
                ..Default::default()
            };
            self.report(cr, &outcome, None, OffsetDateTime::now_utc())
                .await;
            return Err(ReconcileError::SharedNotListed {
                name: name.to_string(),
            });
        };
        for s in self.state.shared_secrets_holding(&owner.name) {
            if *s.name != *name {
                shared.push(s);
            }
        }
        Ok(shared)
    }

    /// The other merge CRs writing into Secrets of `spec`'s name, with what they ask for.
    pub(super) fn rivals(
        &self,
        me: &str,
        spec: &ValidSpec,
        namespaces: &[Arc<NamespaceView>],
    ) -> Vec<Rival> {
        let mut rivals = Vec::new();
        for cr in self.state.crs() {
            let Some(name) = cr.metadata.name.as_deref() else {
                continue;
            };
            let merging = cr.spec.secret_policy == Some(SecretPolicy::Merge)
                && cr.spec.secret_name == spec.secret_name
                && cr.metadata.deletion_timestamp.is_none();
            if name == me || !merging {
                continue;
            }
            let Ok(valid) = self.specs.valid(name, &cr.spec) else {
                continue;
            };
            let targets = select::target_namespaces(&valid, namespaces.iter().map(|n| &**n));
            rivals.push(Rival {
                name: name.to_string(),
                created: cr.metadata.creation_timestamp.clone().unwrap_or_default(),
                targets: targets.namespaces.into_iter().collect(),
                hosts: valid.registries.iter().map(|r| r.host.clone()).collect(),
            });
        }
        rivals
    }

    /// Drops from `plan` the ServiceAccount entries another CR still needs: the
    /// annotation records Secret names, not which CR added them, so an entry stays while
    /// any other live CR targets that namespace with that Secret name and selects that
    /// ServiceAccount (a pod created meanwhile would run without its pull secret). The
    /// last CR to leave removes it.
    pub(super) fn keep_entries_others_need(&self, me: &str, plan: &mut Plan) {
        if plan.sa_removes.is_empty() {
            return;
        }
        let names: BTreeSet<&str> = plan.sa_removes.iter().map(|e| e.secret.as_str()).collect();
        let namespaces = self.state.namespaces();
        let mut others = Vec::new();
        for cr in self.state.crs() {
            let Some(name) = cr.metadata.name.as_deref() else {
                continue;
            };
            let live = cr.metadata.deletion_timestamp.is_none();
            if name == me || !live || !names.contains(cr.spec.secret_name.as_str()) {
                continue;
            }
            let Ok(valid) = self.specs.valid(name, &cr.spec) else {
                continue;
            };
            let targets = select::target_namespaces(&valid, namespaces.iter().map(|n| &**n));
            others.push((valid, targets.namespaces));
        }
        plan.sa_removes.retain(|edit| {
            !others.iter().any(|(spec, targets)| {
                spec.secret_name == edit.secret
                    && targets.iter().any(|t| *t == *edit.sa.namespace)
                    && plan::service_account_selected(&spec.service_accounts, &edit.sa.name)
            })
        });
    }

    /// Whether CR `cr` may use the identity `spec` names: its credentials (or
    /// certificate) Secret's grant and its roles' (the Roles Anywhere session's and the
    /// chained one). Asked before every use of a token, fetched or cached.
    pub(super) async fn permitted(
        &self,
        cr: &str,
        spec: &ValidSpec,
    ) -> Result<(), (Reason, String)> {
        if let Some(secret) = &spec.aws.credentials_secret_ref {
            self.check_grant(cr, "credentialsSecretRef", secret).await?;
        }
        let session_role = match &spec.aws.roles_anywhere {
            Some(ra) => {
                let secret = &ra.certificate_secret_ref;
                self.check_grant(cr, "rolesAnywhere.certificateSecretRef", secret)
                    .await?;
                Some(("rolesAnywhere.roleArn", &ra.role_arn))
            }
            None => None,
        };
        let chained = spec.aws.role_arn.as_ref().map(|r| ("roleArn", r));
        for (field, role) in session_role.into_iter().chain(chained) {
            if !self.state.role_granted(cr, role).await {
                let namespace = self
                    .settings
                    .operator_namespace
                    .as_deref()
                    .unwrap_or("the operator's namespace");
                return Err((
                    Reason::RoleNotPermitted,
                    format!(
                        "spec.aws.{field} is not granted to this ECRPullSecret: a cluster admin \
                         lists the role under the key {cr} of ConfigMap {namespace}/{ROLE_GRANTS_CONFIGMAP}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether CR `cr` may sign with `secret`: always in the operator's namespace, else
    /// only when the Secret grants it. The answer is the same whether the Secret is
    /// missing, unreadable or simply not granting, so a CR learns nothing about Secrets
    /// it may not use.
    pub(super) async fn check_grant(
        &self,
        cr: &str,
        field: &str,
        secret: &SecretRef,
    ) -> Result<(), (Reason, String)> {
        if self.settings.operator_namespace.as_deref() == Some(secret.namespace.as_str()) {
            return Ok(());
        }
        let grants = self.state.credential_grants(secret).await;
        if grants.iter().any(|g| g == cr || g == "*") {
            return Ok(());
        }
        Err((
            Reason::CredentialsNotPermitted,
            format!(
                "spec.aws.{field} {}/{} is not permitted: a Secret outside the \
                 operator's namespace must list this ECRPullSecret in its annotation {GRANT_ANNOTATION}",
                secret.namespace, secret.name
            ),
        ))
    }
}
