//! Artifact stages: each turns a validated section of a `pipeline.toml` plus its
//! input files into the bytes of one artifact kind (.deb, .rpm, OCI image,
//! machine image).
//!
//! The machine stage runs system tools (mke2fs, debugfs, qemu-img, dpkg or
//! rpm, chroot; xorriso or mkfs.vfat and mcopy for seeds): see [`machine`].
//!
//! Stages know nothing of the store or of the pipeline model; the `pipeline`
//! crate hands them plain inputs and stores what they return.
#![deny(missing_docs)]

pub mod compress;
pub mod deb;
pub mod digest;
pub mod docs;
mod error;
mod io;
pub mod machine;
pub mod oci;
mod tarball;
pub mod tree;

pub use error::{Error, Result};

/// The .rpm stage: signed, reproducible RPM packages.
pub mod rpm;
