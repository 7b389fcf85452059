//! Consumer-facing metadata: apt `Packages`/`Release`/`InRelease`, yum
//! `repodata`, OCI indices and manifests.
//!
//! Everything here renders from recorded package metadata, never from package
//! bytes, so regenerating a repository reads no package file.
#![deny(missing_docs)]
