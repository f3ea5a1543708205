//! The business logic: from an `ECRPullSecret` and the observed cluster to Secrets,
//! ServiceAccount entries and a status.
//!
//! `decide/` holds the pure decisions (which namespaces, which writes, what a Secret
//! holds, what to report; `decide::step` is one reconcile's whole decision);
//! `execute/` writes, carrying a plan out through single-object requests; `reconciler`
//! runs one reconcile as a pipeline of stages that never goes back (observe, decide,
//! fetch, act, conclude), a file each. `vocab` is the ground floor: the labels, annotations, finalizer, reasons and
//! the redaction of user values (`shown`) everything else shares. Every file imports
//! only from its own floor or below: `decide/` never from `execute/` or `reconciler`.

pub(crate) mod decide;
pub(crate) mod execute;
pub(crate) mod reconciler;
pub(crate) mod specs;
pub(crate) mod tokens;
pub(crate) mod verify;
pub(crate) mod vocab;
