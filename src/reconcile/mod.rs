//! The business logic: from an `ECRPullSecret` and the observed cluster to Secrets,
//! ServiceAccount entries and a status. Planning is pure (`plan`); `executor` applies it.

pub mod dockerconfig;
pub mod events;
pub mod executor;
pub mod plan;
pub mod reconciler;
pub mod registry;
pub mod sa_writes;
pub mod select;
pub mod spec;
pub mod state;
pub mod status;
pub mod tokens;
