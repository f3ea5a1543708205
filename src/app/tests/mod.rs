//! The operator against real peers, in-crate: the AWS side as the reconciler meets it,
//! through `tokens::AwsTokenFetcher`, against the AWS emulator (`aws_emulated`,
//! `aws_fetcher`) and moto's server mode (`aws_moto`); and every spec the CRD admits
//! through validation, planning and reconciles against both emulators
//! (`admitted_specs`).

mod admitted_specs;
mod aws_emulated;
mod aws_fetcher;
mod aws_moto;
