//! Artifact stages: each turns a validated section of a `pipeline.toml` plus its
//! input files into the bytes of one artifact kind (.deb, .rpm, OCI image,
//! machine image).
//!
//! Stages know nothing of the store or of the pipeline model; the `pipeline`
//! crate hands them plain inputs and stores what they return.
#![deny(missing_docs)]

mod compress;
pub mod deb;
pub mod docs;
mod error;
mod tarball;
pub mod tree;

pub use error::{Error, Result};

/// The .rpm stage: signed, reproducible RPM packages.
pub mod rpm;
