//! The writers of reconcile/: Secrets, ServiceAccount entries, shared-Secret merges, the
//! CR's finalizer and status patches (`cr_patch`) and Events, each a single-object
//! request. They carry out what `decide/` decided and report what happened.

pub(crate) mod apply;
pub(crate) mod cr_patch;
pub(crate) mod events;
pub(crate) mod sa_locks;
pub(crate) mod writes;
