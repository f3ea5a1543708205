//! The controller machinery: list+watch, stores, the work queue, backoff, leader election.

pub mod backoff;
pub mod controller;
pub mod leader;
pub mod queue;
pub mod store;
pub mod watcher;
