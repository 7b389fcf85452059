//! `pipe build`: run the build steps and stages, each only when its cache key
//! is not built yet; write and sign the manifest and provenance.

use pipeline::build::steps::StepStatus;
use pipeline::store::{OpenOptions, Store, StoreUrl};
use pipeline::{Error, Result};
use serde_json::{Value, json};

use super::human_bytes;
use crate::Context;

/// Where a build caches its steps and artifacts when its S3 store cannot be
/// reached, relative to the project.
const OFFLINE_STORE: &str = ".pipe/offline-store";

pub async fn run(cx: &Context, plan_only: bool) -> Result<()> {
    let p = cx.pipeline_with_inputs()?;
    if plan_only {
        // Without a key the plan still shows everything but the keys of
        // artifacts signed inside (rpm).
        let key = cx.signing_key().ok();
        let (plan, epoch_source) = pipeline::build::plan(p, key.as_ref()).await?;
        cx.printer.result(
            || plan.render(),
            || json!({ "ok": true, "plan": plan, "source_date_epoch_from": epoch_source }),
        );
        return Ok(());
    }
    let key = cx.signing_key()?;
    // The same plan without the keys: executing computes each key as the
    // node runs, and hashing every input twice would double a build's reads.
    let plan = pipeline::build::plan::Plan::new(p)?;
    for n in &plan.not_built {
        tracing::warn!("{}", n.warning().trim_start_matches("warning: "));
    }
    let url = cx.store_url(Some(p))?;
    // An S3 store that does not answer: build anyway, against a local cache
    // store, and say what could not be shared.
    let (store, offline) = match cx.open_store(&url).await {
        Ok(store) => (store, None),
        Err(e @ (Error::Unreachable { .. } | Error::S3 { .. }))
            if matches!(url, StoreUrl::S3 { .. }) =>
        {
            let dir = cx.dir.join(OFFLINE_STORE);
            tracing::warn!("{e}; building with the local cache in {}", dir.display());
            let local = Store::open(&StoreUrl::Local(dir.clone()), &OpenOptions::default()).await?;
            (local, Some((e.to_string(), dir)))
        }
        Err(e) => return Err(e),
    };
    let spinner = cx.printer.spinner("building");
    let outcome = pipeline::build::execute(p, &plan, &store, &key).await;
    spinner.finish_and_clear();
    let outcome = outcome?;
    let m = &outcome.manifest;

    cx.printer.result(
        || {
            let mut s = String::new();
            for st in &outcome.steps {
                let what = match st.status {
                    StepStatus::Ran => format!("ran in {:.2}s", st.seconds),
                    StepStatus::Restored => "cache hit: restored from the store".to_string(),
                    StepStatus::UpToDate => "cache hit: up to date, not run".to_string(),
                };
                s.push_str(&format!("step {:<24} {what}\n", st.name));
            }
            for b in &outcome.built {
                let what = if b.cache_hit {
                    "cache hit: not rebuilt".to_string()
                } else {
                    format!("built in {:.2}s", b.seconds)
                };
                s.push_str(&format!(
                    "{:<4} {:<24} {:>10}  {what}\n",
                    b.artifact.kind,
                    b.artifact.name,
                    human_bytes(b.artifact.blob.size)
                ));
            }
            let rebuilt = outcome.built.iter().filter(|b| !b.cache_hit).count();
            let ran = outcome
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Ran)
                .count();
            if rebuilt == 0 && ran == 0 {
                s.push_str("nothing changed: every stage was a cache hit\n");
            }
            s.push_str(&format!("build {} in {}\n", m.build, outcome.dir.display()));
            if let Some((reason, dir)) = &offline {
                s.push_str(&format!(
                    "not shared: the store {url} cannot be reached ({reason}); {ran} step run(s) and {rebuilt} artifact(s) built here are cached only in {}, so other machines build them again; `pipe publish` uploads this build once the store answers\n",
                    dir.display()
                ));
            }
            s
        },
        || {
            json!({
                "ok": true,
                "build": m.build,
                "dir": outcome.dir,
                "not_shared": offline.as_ref().map(|(reason, dir)| json!({
                    "store": url.to_string(),
                    "reason": reason,
                    "cached_in": dir,
                    "steps_run": outcome.steps.iter().filter(|s| s.status == StepStatus::Ran).count(),
                    "artifacts_built": outcome.built.iter().filter(|b| !b.cache_hit).count(),
                })),
                "source_date_epoch": { "value": m.source_date_epoch, "from": outcome.epoch_source },
                "steps": outcome.steps,
                "artifacts": outcome.built.iter().map(|b| json!({
                    "name": b.artifact.name,
                    "kind": b.artifact.kind,
                    "component": b.artifact.component,
                    "path": b.path_in(&outcome.dir),
                    "store_key": b.artifact.blob.key(),
                    "size": b.artifact.blob.size,
                    "sha256": b.artifact.blob.sha256,
                    "blake3": b.artifact.blob.blake3,
                    "cache_key": b.artifact.cache_key,
                    "cache": if b.cache_hit { "hit" } else { "miss" },
                    "seconds": b.seconds,
                })).collect::<Vec<Value>>(),
            })
        },
    );
    Ok(())
}
