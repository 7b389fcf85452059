//! The core of pipe: the `pipeline.toml` model and its validation, the
//! content-addressed store, publish, promote and deploy. The `pipe` binary is a thin layer over this crate.
#![deny(missing_docs)]

pub mod build;
pub mod deploy;
pub mod error;
mod fault;
pub mod model;
pub mod promote;
pub mod publish;
pub mod registry;
pub mod repository;
pub mod store;

pub use error::{Error, Result};
