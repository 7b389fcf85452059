//! The provenance of a build: an in-toto statement carrying a SLSA v1
//! provenance predicate (how and when), signed. It records the run (an
//! invocation id, start and finish times), so it differs per run by design;
//! the manifest it describes is a record ([`crate::records::Manifest`]).

use serde_json::{Value, json};

use super::TOOL_VERSION;
use crate::artifact::ArtifactKind;
pub(crate) use crate::records::Manifest;

/// Facts about one run of `pipe build`, for the provenance.
#[derive(Debug, Clone)]
pub(crate) struct RunFacts {
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
pub(crate) const BUILD_TYPE: &str = "https://pipe.dev/build/v1";

/// What the provenance names as its subjects, `(name, sha256)`: every shard
/// of the manifest (which lists its artifacts with their digests: the
/// statement stays small however many packages a build has, and a shard
/// is bound to its artifacts as the manifest is), and directly every
/// artifact that is not a package (an image's manifest, configuration and
/// layers, a machine image): few, and what a registry or an autoscaler
/// looks up by digest.
pub(crate) fn subjects(m: &Manifest) -> Vec<(String, String)> {
    subject_blobs(m)
        .into_iter()
        .map(|(name, blob)| (name, blob.sha256))
        .collect()
}

fn subject_blobs(m: &Manifest) -> Vec<(String, crate::store::BlobRef)> {
    m.shards
        .iter()
        .map(|s| {
            (
                crate::store::layout::manifest_shard(&s.blob.blake3),
                s.blob.clone(),
            )
        })
        .chain(
            m.artifacts
                .iter()
                .filter(|a| !matches!(a.kind, ArtifactKind::Deb | ArtifactKind::Rpm))
                .map(|a| (a.name.clone(), a.blob.clone())),
        )
        .collect()
}

/// An in-toto Statement v1 with a SLSA Provenance v1 predicate for `m`.
/// Its resolved dependencies are the manifest's shards too: each lists the
/// input files of its artifacts with their digests.
pub(crate) fn provenance(m: &Manifest, run: &RunFacts) -> Value {
    let subjects: Vec<Value> = subject_blobs(m)
        .into_iter()
        .map(|(name, blob)| json!({ "name": name, "digest": { "sha256": blob.sha256, "blake3": blob.blake3 } }))
        .collect();
    let dependencies: Vec<Value> = m
        .shards
        .iter()
        .map(|s| {
            json!({
                "name": format!("manifest shard {}", s.bucket),
                "uri": format!("file:{}", crate::store::layout::manifest_shard(&s.blob.blake3)),
                "digest": { "sha256": s.blob.sha256, "blake3": s.blob.blake3 },
                "annotations": { "lists": "the input files of its artifacts, with their digests" },
            })
        })
        .collect();
    let components: Vec<String> = {
        let mut c: Vec<String> = m
            .artifacts
            .iter()
            .map(|a| a.component.to_string())
            .collect();
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
