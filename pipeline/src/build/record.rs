//! The provenance of a build: an in-toto statement carrying a SLSA v1
//! provenance predicate (how and when), signed. It records the run (an
//! invocation id, start and finish times), so it differs per run by design;
//! the manifest it describes is a record ([`crate::records::Manifest`]).

use serde_json::{Value, json};

use super::TOOL_VERSION;
pub use crate::records::{Input, MANIFEST_FORMAT, Manifest, StepSummary};

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
