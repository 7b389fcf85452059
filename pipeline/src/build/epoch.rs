//! The timestamp every artifact is clamped to (reproducible-builds.org's
//! `SOURCE_DATE_EPOCH`).

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::model::Pipeline;
use crate::model::rules::MAX_EPOCH;
use crate::{Error, Result};

/// Where the timestamp came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochSource {
    /// `project.source_date_epoch` in `pipeline.toml`.
    PipelineToml,
    /// The `SOURCE_DATE_EPOCH` environment variable.
    Environment,
    /// The time of the last git commit.
    GitCommit,
}

/// The build's timestamp: `project.source_date_epoch`, else
/// `$SOURCE_DATE_EPOCH`, else the last git commit time. Never the clock: a
/// build that used the current time could not be reproduced.
pub(crate) fn source_date_epoch(p: &Pipeline) -> Result<(u64, EpochSource)> {
    if let Some(t) = p.project.source_date_epoch {
        return Ok((t, EpochSource::PipelineToml));
    }
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let v = v.to_string_lossy();
        return match v.trim().parse::<u64>() {
            Ok(t) if t <= MAX_EPOCH => Ok((t, EpochSource::Environment)),
            Ok(_) => Err(Error::Usage {
                message: format!(
                    "SOURCE_DATE_EPOCH=`{v}` is after {MAX_EPOCH} (2106-02-07), the last date an rpm can carry"
                ),
                hint: Some("set it to seconds since 1970-01-01 UTC".into()),
            }),
            Err(_) => Err(Error::Usage {
                message: format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds"),
                hint: Some(
                    "set it to seconds since 1970-01-01 UTC, e.g. `$(git log -1 --format=%ct)`"
                        .into(),
                ),
            }),
        };
    }
    if let Some(t) = last_commit_time(&p.dir).filter(|t| *t <= MAX_EPOCH) {
        return Ok((t, EpochSource::GitCommit));
    }
    Err(Error::Usage {
        message: "no timestamp to build with: no `project.source_date_epoch`, no $SOURCE_DATE_EPOCH, and the project is not in a git repository with commits".into(),
        hint: Some("add `source_date_epoch = <seconds>` to [project], or export SOURCE_DATE_EPOCH".into()),
    })
}

fn last_commit_time(dir: &Path) -> Option<u64> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}
