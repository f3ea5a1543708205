//! The business logic: from an `ECRPullSecret` and the observed cluster to Secrets,
//! ServiceAccount entries and a status.
//!
//! `reconciler` orchestrates one reconcile; the decisions are pure (`select` which
//! namespaces, `plan` which writes, `content` what a Secret holds, `status` what to
//! report); `apply` carries a plan out through `writes`, single-object requests.

pub mod apply;
pub mod content;
pub mod dockerconfig;
pub mod events;
pub mod finalizer;
pub mod plan;
pub mod reconciler;
pub mod registry;
pub mod sa_locks;
pub mod select;
pub mod shared;
pub mod spec;
pub mod specs;
pub mod state;
pub mod status;
pub mod tokens;
pub mod validate;
pub mod verify;
pub mod vocab;
pub mod writes;
