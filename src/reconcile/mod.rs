//! The business logic: from an `ECRPullSecret` and the observed cluster to Secrets,
//! ServiceAccount entries and a status. Planning is pure (`plan`); `executor` applies it.

pub mod dockerconfig;
pub mod plan;
pub mod registry;
pub mod select;
pub mod spec;
pub mod state;
