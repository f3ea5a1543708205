//! The writers of reconcile/: Secrets, ServiceAccount entries, shared-Secret merges, the
//! cleanup finalizer and Events, each a single-object request. They carry out what
//! `decide/` planned and report what happened. (The CR's status patch is still sent from
//! `reconciler`.)

pub(crate) mod apply;
pub(crate) mod events;
pub(crate) mod finalizer;
pub(crate) mod sa_locks;
pub(crate) mod writes;
