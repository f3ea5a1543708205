//! The business logic: from an `ECRPullSecret` and the observed cluster to Secrets,
//! ServiceAccount entries and a status.
//!
//! `decide/` holds the pure decisions (which namespaces, which writes, what a Secret
//! holds, what to report); `execute/` writes, carrying a plan out through single-object
//! requests; `reconciler` orchestrates one reconcile (and still sends the status patch
//! itself). `vocab` is the ground floor: the labels, annotations, finalizer, reasons and
//! the redaction of user values (`shown`) everything else shares. Every file imports
//! only from its own floor or below: `decide/` never from `execute/` or `reconciler`.

pub mod decide;
pub mod execute;
pub mod reconciler;
pub mod specs;
pub mod tokens;
pub mod verify;
pub mod vocab;
