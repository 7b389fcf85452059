//! What a build leaves behind besides its artifacts: a manifest (what was
//! built, from what, with which digests) and an in-toto statement carrying a
//! SLSA v1 provenance predicate (how and when), both signed.
//!
//! The manifest holds nothing that varies between two builds of the same
//! inputs, so it is byte-identical too and its digest names the build. The
//! provenance records the run (an invocation id, start and finish times), so
//! it differs per run by design.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::TOOL_VERSION;
use super::packages::Artifact;
use crate::store::BlobRef;

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
    /// blake3 (hex) of the build's `index.json`, the package metadata the
    /// apt and yum indices are rendered from: the index is not signed
    /// itself, this binds it to the signed manifest. Absent in builds of an
    /// older pipe, which no promotion accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
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
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serialises");
        v.push(b'\n');
        v
    }
}

/// Facts about one run of `pipe build`, for the provenance.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// A fresh id for this invocation.
    pub invocation_id: String,
    /// RFC 3339 start time.
    pub started_on: String,
    /// RFC 3339 finish time.
    pub finished_on: String,
    /// Who or what ran the build (`builder.id`).
    pub builder_id: String,
}

/// The build type URI pipe's provenance declares.
pub const BUILD_TYPE: &str = "https://pipe.dev/build/v1";

/// An in-toto Statement v1 with a SLSA Provenance v1 predicate for `m`.
pub fn provenance(m: &Manifest, run: &RunFacts) -> Value {
    let subjects: Vec<Value> = m
        .artifacts
        .iter()
        .map(|a| json!({ "name": a.name, "digest": { "sha256": a.blob.sha256, "blake3": a.blob.blake3 } }))
        .collect();
    let dependencies: Vec<Value> = m
        .inputs
        .iter()
        .map(|i| json!({ "uri": format!("file:{}", i.path), "digest": { "sha256": i.blob.sha256, "blake3": i.blob.blake3 } }))
        .collect();
    let components: Vec<&str> = {
        let mut c: Vec<&str> = m.artifacts.iter().map(|a| a.component.as_str()).collect();
        c.dedup();
        c
    };
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "pipeline": {
                        "uri": "file:pipeline.toml",
                        "digest": { "sha256": m.pipeline.sha256, "blake3": m.pipeline.blake3 },
                    },
                    "project": m.project,
                    "version": m.version,
                    "components": components,
                },
                "internalParameters": {
                    "sourceDateEpoch": m.source_date_epoch,
                    "steps": m.steps,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": run.builder_id,
                    "version": { "pipe": TOOL_VERSION },
                },
                "metadata": {
                    "invocationId": run.invocation_id,
                    "startedOn": run.started_on,
                    "finishedOn": run.finished_on,
                },
            },
        },
    })
}
