//! Harness for pipe's end-to-end tests: locates the `pipe` binary, makes
//! scratch projects, and starts real servers (an S3-compatible server, proxies
//! that misbehave on purpose) on 127.0.0.1.

pub mod attacker;
pub mod cli;
pub mod consumers;
pub mod machine;
pub mod oci;
pub mod proxy;
pub mod raw;
pub mod registry;
pub mod s3;
