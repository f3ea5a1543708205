//! The AWS side as the reconciler meets it, through `tokens::AwsTokenFetcher`, against
//! real peers: the AWS emulator (`aws_emulated`, `aws_fetcher`) and moto's server mode
//! (`aws_moto`).

mod aws_emulated;
mod aws_fetcher;
mod aws_moto;
