//! A build's manifest: what was built, from what, with which digests;
//! signed.
//!
//! The manifest holds nothing that varies between two builds of the same
//! inputs, so it is byte-identical too and its digest names the build.

use serde::{Deserialize, Serialize};

use crate::artifact::Artifact;
use crate::store::{BlobRef, layout};
use crate::{Error, Result};

/// File names inside a build directory (`.pipe/builds/<id>/`) and under a
/// published build's prefix ([`layout::build_file`]).
pub mod files {
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// Its detached armored signature.
    pub const MANIFEST_SIG: &str = "manifest.json.asc";
    /// The in-toto statement with the SLSA provenance.
    pub const PROVENANCE: &str = "provenance.json";
    /// Its detached armored signature.
    pub const PROVENANCE_SIG: &str = "provenance.json.asc";
    /// What the consumer views need of every artifact
    /// ([`crate::records::BuildIndex`]).
    pub const INDEX: &str = "index.json";
}

/// `manifest.json` of a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The build id: `VERSION-` and the first 16 hex digits of the blake3
    /// digest of this manifest with `build` empty.
    pub build: String,
    /// Project name.
    pub project: String,
    /// Project version.
    pub version: String,
    /// Every timestamp in the artifacts.
    pub source_date_epoch: u64,
    /// The pipe that built it.
    pub tool: String,
    /// Digests of `pipeline.toml`.
    pub pipeline: BlobRef,
    /// Every artifact.
    pub artifacts: Vec<Artifact>,
    /// Every input file, relative to the project directory, with its digests.
    pub inputs: Vec<Input>,
    /// Every build step, with its cache key.
    pub steps: Vec<StepSummary>,
    /// `[deploy]` of the `pipeline.toml` the build was made from: what
    /// `pipe deploy` installs and writes, signed with the rest, so a deploy
    /// needs no checkout and deploys nothing nobody signed. Absent (empty)
    /// in manifests of an older pipe.
    #[serde(default, skip_serializing_if = "DeploySpec::is_empty")]
    pub deploy: DeploySpec,
    /// blake3 (hex) of the build's `index.json`, the metadata the consumer
    /// views are rendered from: the index is not signed itself, this binds
    /// it to the signed manifest. Absent in builds of an older pipe, which
    /// no promotion accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

/// The `[deploy]` section as a build records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// Files written at deploy time: absolute path to template text.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, String>,
    /// The packages a deploy installs; empty means every package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// A command run after the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The packages whose `mode`s may set the setuid, setgid or
    /// world-writable bit (`allow_special_modes`); deploy refuses such an
    /// entry of any other package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_modes: Vec<String>,
}

impl DeploySpec {
    /// True when the section says nothing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.packages.is_empty()
            && self.after.is_none()
            && self.special_modes.is_empty()
    }
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Path relative to the project directory.
    pub path: String,
    /// Its digests.
    pub blob: BlobRef,
}

/// A build step as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step name.
    pub name: String,
    /// Its cache key.
    pub key: String,
}

/// The manifest format this pipe writes.
pub const MANIFEST_FORMAT: u32 = 1;

impl Manifest {
    /// Fills in `build` from the digest of everything else.
    pub fn seal(mut self) -> Manifest {
        self.build = String::new();
        let digest = blake3::hash(&self.to_json());
        self.build = format!("{}-{}", self.version, &digest.to_hex()[..16]);
        self
    }

    /// The canonical bytes: pretty JSON, fields in declaration order, a final
    /// newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = crate::json::to_vec_pretty(self);
        v.push(b'\n');
        v
    }
}

/// Store key of a published build's file.
pub fn build_key(build: &str, file: &str) -> String {
    layout::build_file(build, file)
}

/// Parses a manifest's bytes; `what` names where they came from.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|e| Error::Verify {
        what: what.to_string(),
        detail: format!("not a build manifest: {e}"),
    })
}
