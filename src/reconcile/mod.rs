//! The business logic: from an `ECRPullSecret` and the observed cluster to Secrets,
//! ServiceAccount entries and a status.
//!
//! `decide/` holds the pure decisions (which namespaces, which writes, what a Secret
//! holds, what to report); `reconciler` orchestrates one reconcile; `apply` carries a
//! plan out through `writes`, single-object requests. `vocab` is the ground floor: the
//! labels, annotations, finalizer and reasons everything else shares.

pub mod apply;
pub mod decide;
pub mod events;
pub mod finalizer;
pub mod reconciler;
pub mod sa_locks;
pub mod specs;
pub mod tokens;
pub mod verify;
pub mod vocab;
pub mod writes;

// The decisions' old paths, kept for app/ and the white-box suites until the crate's
// façade narrows what leaves reconcile/.
pub use decide::{
    content, dockerconfig, plan, registry, select, shared, spec, state, status, validate,
};
