//! What deploy, fetch and `deploy --plan` report: [`Report`], [`Plan`],
//! [`TargetReport`], [`Fetched`], [`Source`] and [`Timings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use keys::Verified;
use serde::{Deserialize, Serialize};

/// Seconds spent in each state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Reading the pointer, history and records.
    pub resolve: f64,
    /// Downloading artifacts into the cache.
    pub fetch: f64,
    /// Checking signatures, the chain and digests.
    pub verify: f64,
    /// Unpacking payloads.
    pub unpack: f64,
    /// Rendering `[deploy] files` and writing the release record.
    pub configure: f64,
    /// Renaming the release and `current` into place, and `[deploy] after`.
    pub switch: f64,
}

impl Timings {
    /// All states together.
    pub fn total(&self) -> f64 {
        self.resolve + self.fetch + self.verify + self.unpack + self.configure + self.switch
    }
}

/// Where the pointer and records came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum Source {
    /// The store, reachable.
    Store {
        /// Its URL.
        url: String,
    },
    /// The target's cache, because the store could not be reached.
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// Why the store was not used.
        reason: String,
    },
}

/// One selected package artifact and whether it had to be downloaded.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    /// Artifact file name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// True when it was already in the cache (and verified there).
    pub cached: bool,
}

/// What happened in one target directory.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target directory.
    pub dir: PathBuf,
    /// `deployed`, `already current`, `reset` or `reconfigured`.
    pub action: String,
    /// The build `current` pointed at before.
    pub previous: Option<String>,
    /// The release directory.
    pub release: PathBuf,
    /// Entries unpacked (files, directories, links).
    pub entries: usize,
    /// Packages not decompressed: their payload was one the previous
    /// release had unpacked, and its files were taken from there (reflink
    /// or copy, each checked against its recorded digest).
    pub reused: Vec<String>,
    /// The `[deploy] files` written.
    pub rendered: Vec<String>,
    /// Releases deleted by `--keep`.
    pub pruned: Vec<String>,
    /// Time per state (resolve, fetch and verify are shared by all targets).
    pub timings: Timings,
}

/// What [`deploy`](super::deploy()) did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The environment.
    pub env: String,
    /// The build deployed.
    pub build: String,
    /// Who signed the build's manifest.
    pub signer: Verified,
    /// Where the pointer and records came from.
    pub source: Source,
    /// The selected artifacts.
    pub artifacts: Vec<Fetched>,
    /// Per target, in the order given.
    pub targets: Vec<TargetReport>,
}

/// What [`plan`](super::plan()) would do, without doing it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The environment.
    pub env: String,
    /// The build it points at.
    pub build: String,
    /// Where the pointer and records came from.
    pub source: Source,
    /// The artifacts that would be used (`cached`: no download needed in the
    /// first target).
    pub artifacts: Vec<Fetched>,
    /// The `[deploy] files` that would be written, rendered.
    pub files: BTreeMap<String, String>,
    /// Per target: the build `current` points at now.
    pub current: Vec<(PathBuf, Option<String>)>,
}
