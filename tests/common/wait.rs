//! The tests' waits: the emulators crate's bounded polling loop, the one the demo and the
//! bench use too ([`poll`], re-exported for probes that must await, such as an HTTP
//! request). A timeout panics saying what was awaited and what was last seen.

pub(crate) use emulators::wait::{poll, wait_for, wait_until, wait_until_async};
