//! `pipe fsck [--repair]`: check the whole store; repair what can be.

use keys::Keyring;
use pipeline::fsck::{self, RepairFrom, Report};
use pipeline::{Error, Result};
use serde_json::json;

use super::human_bytes;
use crate::Context;
use crate::cli::FsckArgs;

pub async fn run(cx: &Context, args: &FsckArgs) -> Result<()> {
    let pipeline = if args.repair {
        Some(cx.pipeline()?)
    } else {
        cx.pipeline_if_any()?
    };
    let url = cx.store_url(pipeline)?;
    let store = cx.open_store(&url).await?;
    // The signing key signs repaired views; without `--keyring`, its
    // keyring (and the one `keys rotate` left beside it) is what the store
    // is verified against.
    let key = if args.repair || args.keyring.is_none() {
        Some(cx.signing_key()?)
    } else {
        None
    };
    let keyring = match (&args.keyring, &key) {
        (Some(path), _) => Keyring::load(&cx.dir.join(path))?,
        (None, Some(key)) => super::keys::project_keyring(key, &cx.signing_key_path()?)?,
        (None, None) => super::keys::project_keyring(&cx.signing_key()?, &cx.signing_key_path()?)?,
    };
    let spinner = cx.printer.spinner("checking the store");
    let outcome = match (args.repair, pipeline, &key) {
        (true, Some(p), Some(key)) => {
            let from = RepairFrom {
                pipeline: p,
                key,
                builds: fsck::repair_sources(&cx.dir, &args.from),
            };
            fsck::repair(&store, &keyring, &from)
                .await
                .map(|(r, report)| (Some(r), report))
        }
        _ => fsck::check(&store, &keyring).await.map(|r| (None, r)),
    };
    spinner.finish_and_clear();
    let (repaired, report) = outcome?;
    cx.printer.answer(
        || describe(&report, repaired.as_ref()),
        || json!({ "ok": report.clean(), "report": report, "repaired": repaired }),
    );
    if report.clean() {
        Ok(())
    } else {
        Err(Error::Damaged {
            url: url.to_string(),
            problems: report.problems.len(),
            repair: args.repair,
        })
    }
}

fn describe(r: &Report, repaired: Option<&fsck::Repaired>) -> String {
    let mut s = String::new();
    if let Some(done) = repaired {
        for key in &done.objects {
            s.push_str(&format!("repaired  {key}\n"));
        }
        for env in &done.environments {
            s.push_str(&format!("repaired  the views of `{env}` (regenerated)\n"));
        }
        for left in &done.left {
            s.push_str(&format!("not repaired  {left}\n"));
        }
    }
    for p in &r.problems {
        s.push_str(&format!(
            "{:<18} {}: {}\n                   repair: {}\n",
            serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            p.key,
            p.detail,
            p.repair
        ));
    }
    s.push_str(&format!(
        "{}: {} blob(s) ({}), {} build(s), {} pool file(s), {} cache record(s), {} environment(s), {} repository view(s) checked; {} problem(s)\n",
        r.store,
        r.blobs,
        human_bytes(r.blob_bytes),
        r.builds,
        r.pool_files,
        r.cache_records,
        r.environments,
        r.views,
        r.problems.len()
    ));
    if r.unreferenced > 0 {
        s.push_str(&format!(
            "{} object(s) ({}) nothing refers to (an interrupted publish leaves them; `pipe gc` deletes them)\n",
            r.unreferenced,
            human_bytes(r.unreferenced_bytes)
        ));
    }
    if !r.pending_views.is_empty() {
        s.push_str(&format!(
            "views behind their pointer or being regenerated: {} (`pipe refresh --env ENV` completes them)\n",
            r.pending_views.join(", ")
        ));
    }
    s
}
