//! One reconcile of one CR, as a pipeline of stages that never goes back: `observe`
//! reads the caches once, `decide::step` decides (pure), `fetch` arms it with the tokens the
//! writes need, `act` writes, and `conclude` reports status, events and metrics. Each
//! stage is a file of its own and hands the next one a value, so a reader follows a CR
//! event from top to bottom.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::decide::select::NamespaceView;
use super::decide::shared::SharedSecret;
use super::decide::spec::{EcrPullSecret, SecretRef};
use super::decide::state::{ManagedSecret, SaView};
use super::decide::step;
use super::execute::apply::Applier;
use super::execute::cr_patch::CrPatcher;
use super::execute::events::EventRecorder;
use super::execute::writes::{WriteThrough, Writer};
use super::specs::Specs;
use super::tokens::{FetchToken, TokenCache};
use super::verify::Verifier;
use crate::k8s::Client;
use crate::metrics::Metrics;
pub(crate) use crate::runtime::controller::Action;

mod act;
mod conclude;
mod error;
mod fetch;
mod observe;

use act::Actor;
use conclude::Reporter;
use fetch::Supplier;
use observe::Observer;

pub(crate) use error::ReconcileError;

/// Read access to the watch caches, so the reconciler sees no wire.
/// The caches also take our writes' answers ([`WriteThrough`]), ahead of the watch.
pub(crate) trait ObservedState: WriteThrough + Clone + Send + Sync + 'static {
    fn cr(&self, name: &str) -> Option<EcrPullSecret>;
    /// Every CR: merge CRs of one `secretName` see each other's claims.
    fn crs(&self) -> Vec<Arc<EcrPullSecret>>;
    /// What CR `owner`'s plan reads, in one call: a reconcile observes once.
    fn read(
        &self,
        owner: &str,
        wants: Wants<'_>,
    ) -> impl std::future::Future<Output = Reads> + Send;
    /// Our write of a CR (status, finalizers), as the server answered it: readers see it
    /// until the watch delivers it.
    fn cr_written(&self, cr: EcrPullSecret);
}

/// What a CR's plan asks of the caches beyond the Secrets it owns.
#[derive(Debug, Default)]
pub(crate) struct Wants<'a> {
    /// The managed Secrets of this name too (ours, or another CR's in the way), not only
    /// the owner's: a live CR's `secretName`.
    pub secret_name: Option<&'a str>,
    /// A merge CR's shared Secrets of this name: the watch of that name starts on first
    /// use.
    pub shared: Option<&'a str>,
    /// The Secrets whose grants (their [`GRANT_ANNOTATION`]) are read, once read.
    ///
    /// [`GRANT_ANNOTATION`]: super::vocab::GRANT_ANNOTATION
    pub grants_of: Vec<&'a SecretRef>,
    /// The IAM roles whose grant to the owner is read (see `app::role_grants`).
    pub roles: Vec<&'a str>,
}

/// The caches' answer to [`Wants`]: shared pointers, never copies. Never a copy of every
/// managed Secret either: with many CRs over many namespaces that copy dominated memory
/// and CPU.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Every namespace.
    pub namespaces: Vec<Arc<NamespaceView>>,
    /// The owner's managed Secrets, and those named [`Wants::secret_name`].
    pub secrets: Vec<Arc<ManagedSecret>>,
    /// Every ServiceAccount.
    pub service_accounts: Vec<Arc<SaView>>,
    /// The shared Secrets named [`Wants::shared`]; `None` while not listed (or not asked).
    pub shared: Option<Vec<Arc<SharedSecret>>>,
    /// Every watched shared Secret holding hosts recorded for the owner.
    pub holding: Vec<Arc<SharedSecret>>,
    /// The CRs each of [`Wants::grants_of`] grants its use to, in order; empty when one
    /// is missing.
    pub grantees: Vec<Vec<String>>,
    /// Whether each of [`Wants::roles`] is granted to the owner, in order; `false` while
    /// the grants have not been read.
    pub roles_granted: Vec<bool>,
}

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `AWS_REGION`: the region when a CR names none.
    pub default_region: Option<String>,
    /// Writes in flight at once for one reconcile.
    pub write_concurrency: usize,
    /// How soon a conflict (a foreign Secret our label-filtered watch cannot see) is
    /// looked at again.
    pub conflict_recheck: Duration,
    /// The operator's own namespace: credentials Secrets there need no grant.
    pub operator_namespace: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            operator_namespace: None,
            default_region: None,
            write_concurrency: 16,
            conflict_recheck: Duration::from_secs(60),
        }
    }
}

/// Reconciles `ECRPullSecret`s: one stage each, in the order a reconcile runs them.
pub(crate) struct Reconciler<F, S> {
    observer: Observer<S>,
    supplier: Supplier<F>,
    actor: Actor<S>,
    reporter: Reporter<F, S>,
    /// `AWS_REGION`, for the token groups of specs that name none.
    default_region: Option<String>,
    /// The operator's namespace: credentials Secrets there need no grant.
    operator_namespace: Option<String>,
}

// === impl Reconciler ===

impl<F: FetchToken, S: ObservedState> Reconciler<F, S> {
    pub(crate) fn new(
        client: Client,
        state: S,
        tokens: Arc<TokenCache<F>>,
        events: EventRecorder,
        settings: Settings,
        specs: Arc<Specs>,
        metrics: Metrics,
    ) -> Self {
        let writer = Writer::new(client.clone())
            .with_cache(Arc::new(state.clone()))
            .with_metrics(metrics.clone());
        Reconciler {
            observer: Observer {
                state: state.clone(),
                specs: specs.clone(),
                operator_namespace: settings.operator_namespace.clone(),
            },
            supplier: Supplier {
                tokens: tokens.clone(),
                verifier: Arc::new(Verifier::disabled()),
            },
            actor: Actor {
                patcher: CrPatcher::new(client.clone()),
                applier: Applier::new(writer, settings.write_concurrency),
                specs: specs.clone(),
                state: state.clone(),
            },
            reporter: Reporter {
                patcher: CrPatcher::new(client),
                state,
                events,
                metrics,
                tokens,
                specs,
                default_region: settings.default_region.clone(),
                conflict_recheck: settings.conflict_recheck,
            },
            default_region: settings.default_region,
            operator_namespace: settings.operator_namespace,
        }
    }

    /// Checks each new token at its registries (off unless given).
    #[must_use]
    pub(crate) fn with_verifier(mut self, verifier: Arc<Verifier>) -> Self {
        self.supplier.verifier = verifier;
        self
    }

    pub(crate) fn tokens(&self) -> &Arc<TokenCache<F>> {
        &self.supplier.tokens
    }

    /// The registry this reconciler reports to (the controller times reconciles into it).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.reporter.metrics
    }

    /// Reconciles CR `name`: each stage once, in order.
    pub(crate) async fn reconcile(&self, name: &str) -> Result<Action, ReconcileError> {
        let now = OffsetDateTime::now_utc();
        let observed = self.observer.observe_cr(name).await;
        let context = step::Context {
            region: self.default_region.as_deref(),
            namespace: self.operator_namespace.as_deref(),
        };
        let step = step::step_for(observed, context, now);
        let armed = self.supplier.arm(step, now).await;
        let done = self.actor.act(armed).await;
        self.reporter.conclude(done, now).await
    }

    /// A reconcile of `name` panicked (a bug): say so in its status, so the CR shows
    /// what the log shows, and let the controller retry it with backoff.
    pub(crate) async fn report_panic(&self, name: &str) {
        self.reporter.report_panic(name).await;
    }

    /// Drops the token groups (and the fetcher's per-identity state) no cached CR needs.
    pub(crate) fn prune_tokens(&self) {
        self.reporter.prune_tokens();
    }
}
