//! The writers of reconcile/: Secrets, ServiceAccount entries, shared-Secret merges, the
//! cleanup finalizer and Events, each a single-object request. They carry out what
//! `decide/` planned and report what happened. (The CR's status patch is still sent from
//! `reconciler`.)

pub mod apply;
pub mod events;
pub mod finalizer;
pub mod sa_locks;
pub mod writes;
