//! The decisions of a reconcile, pure: from the CR, the cached observed state and the
//! tokens in hand to a plan of writes and a status. Nothing here holds a `Client`,
//! touches a metric or awaits: every decision is tested as a table, without a server.
//!
//! `spec` and `validate` read the CR, compiling its namespace patterns and checking its
//! selector with `patterns`; `select` picks namespaces and ServiceAccounts;
//! `state` is what the caches keep of the cluster; `plan` decides the writes, `content`
//! and `shared` what a Secret holds; `status` what to report (the next status, its patch
//! and its events, in one `report`); `token` and `verdict` are what the decisions know
//! of tokens and registry checks; `grants` whether a CR may use its identity. `step`
//! puts them together: from what one reconcile observed to the one step it carries out.

pub(crate) mod content;
pub(crate) mod dockerconfig;
pub(crate) mod existing;
pub(crate) mod fields;
pub(crate) mod grants;
pub(crate) mod patterns;
pub(crate) mod phase;
pub(crate) mod plan;
pub(crate) mod registry;
pub(crate) mod rolesanywhere;
pub(crate) mod select;
pub(crate) mod shared;
pub(crate) mod spec;
pub(crate) mod spec_error;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod step;
pub(crate) mod token;
pub(crate) mod validate;
pub(crate) mod verdict;

#[cfg(test)]
mod props_plan;
#[cfg(test)]
mod props_spec;
