//! The core of pipe: the `pipeline.toml` model and its validation, the build
//! plan, the content-addressed store and its records, publish, promote, the
//! consumer views and deploy. The `pipe` binary is a thin layer over this
//! crate.
#![deny(missing_docs)]

pub mod artifact;
pub mod build;
pub mod deploy;
pub mod error;
mod fault;
pub mod fsck;
pub mod gc;
mod json;
pub mod kinds;
pub mod model;
pub mod promote;
pub mod publish;
pub mod records;
pub mod registry;
pub mod rotate;
pub mod status;
pub mod store;
mod task;
pub(crate) mod template;
pub mod views;

pub use error::{Error, Result};
