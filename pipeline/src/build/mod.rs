//! `pipe build`: runs the build steps, then the stages, each skipped when its
//! cache key is already built.
//!
//! Every stage has a key, the digest of everything that can change its output:
//! its section of `pipeline.toml`, its input files, the timestamp artifacts are
//! clamped to, and the pipe version. Outputs are kept in the store under that
//! key, so a second machine sharing the store restores instead of rebuilding.

pub mod epoch;
pub mod steps;

/// Folded into every cache key, so a new pipe never reuses an old pipe's
/// outputs.
pub const TOOL_VERSION: &str = concat!("pipe ", env!("CARGO_PKG_VERSION"));
