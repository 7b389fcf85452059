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
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use repo_index::apt::{self, DebPackage, Entry, SuiteConfig};
//! # let key = keys::SecretKey::generate(&keys::GenerateOptions::new("Repo <repo@example.com>"))?;
//! # let recorded: Vec<DebPackage> = vec![];
//! # let previous: Option<apt::RenderedSuite> = None;
//! # let store_root = std::path::Path::new(".pipe/store");
//! // At publish: one stanza per package, cached by the package's digest.
//! let stanzas: Vec<apt::Stanza> =
//!     recorded.iter().map(apt::render_stanza).collect::<Result<_, _>>()?;
//! // At promote: the suite from cached stanzas, reusing the last rendering.
//! let entries: Vec<Entry> =
//!     stanzas.iter().map(|s| Entry { component: "main", stanza: s }).collect();
//! let config = SuiteConfig::new("prod", std::time::SystemTime::now());
//! let suite = apt::render_suite(&config, &entries, previous.as_ref())?;
//! let plan = suite.write_plan(&suite.sign(&key, config.date)?);
//! plan.write_to_dir(store_root)?; // or walk plan.files for S3
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod apt;
mod chunked;
mod common;
mod error;
pub mod yum;

pub use chunked::Chunk;
pub use common::{PlannedFile, WritePlan};
pub use error::{Error, Result};
