//! The core of pipe: the `pipeline.toml` model and its validation, and the
//! content-addressed store. The `pipe` binary is a thin layer over this crate.
#![deny(missing_docs)]

pub mod build;
pub mod error;
pub mod fault;
pub mod model;
pub mod promote;
pub mod publish;
pub mod repository;
pub mod store;

pub use error::{Error, Result};
