//! The decisions of a reconcile, pure: from the CR, the cached observed state and the
//! tokens in hand to a plan of writes and a status. Nothing here holds a `Client`,
//! touches a metric or awaits: every decision is tested as a table, without a server.
//!
//! `spec` and `validate` read the CR, compiling its namespace patterns and checking its
//! selector with `patterns`; `select` picks namespaces and ServiceAccounts;
//! `state` is what the caches keep of the cluster; `plan` decides the writes, `content`
//! and `shared` what a Secret holds; `status` what to report (the next status, its patch
//! and its events, in one `report`); `token` and `verdict` are what the decisions know
//! of tokens and registry checks.

pub mod content;
pub mod dockerconfig;
pub mod existing;
pub mod fields;
pub mod patterns;
pub mod phase;
pub mod plan;
pub mod registry;
pub mod rolesanywhere;
pub mod select;
pub mod shared;
pub mod spec;
pub mod spec_error;
pub mod state;
pub mod status;
pub mod token;
pub mod validate;
pub mod verdict;

#[cfg(test)]
mod props_plan;
#[cfg(test)]
mod props_spec;
