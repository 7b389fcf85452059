//! Consumer-facing metadata: apt `Packages`/`Release`/`InRelease`, yum
//! `repodata`, OCI indices and manifests.
//!
//! Everything here renders from recorded package metadata, never from package
//! bytes, so regenerating a repository reads no package file.
//!
//! The shape is the same for both formats:
//!
//! 1. at publish time, the pipeline records per package what the index needs
//!    ([`apt::DebPackage`], [`yum::RpmPackage`]);
//! 2. each package renders to a fragment ([`apt::Stanza`],
//!    [`yum::PackageXml`]) that depends on that package only, so the pipeline
//!    can cache it by the package's digest and a promotion re-renders only
//!    packages it has never seen;
//! 3. a suite or repository is the concatenation of fragments plus the
//!    compressed files and the top file listing their checksums
//!    ([`apt::render_suite`], [`yum::render_repo`]); compressed files whose
//!    plain text did not change since the previous rendering are reused;
//! 4. the top file is signed and everything becomes a [`WritePlan`]: the
//!    files in the order that keeps readers safe (content-addressed files
//!    first, the signed top file last).
#![deny(missing_docs)]

pub mod apt;
mod common;
mod error;
pub mod yum;

pub use common::{PlannedFile, WritePlan};
pub use error::{Error, Result};
