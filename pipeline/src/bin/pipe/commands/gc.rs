//! `pipe gc`: delete what nothing refers to (the library's `gc::collect`),
//! and say what, with sizes.

use pipeline::Result;
use pipeline::gc::{self, Class, Options};
use serde_json::json;

use super::human_bytes;
use crate::Context;

pub async fn run(
    cx: &Context,
    dry_run: bool,
    keep_history: Option<u32>,
    grace: Option<std::time::Duration>,
) -> Result<()> {
    // Without a pipeline.toml, gc still works on an explicit store.
    let p = cx.pipeline_if_any()?;
    let url = cx.store_url(p)?;
    let store = cx.open_store(&url).await?;
    let opts = Options {
        dry_run,
        keep_history: keep_history
            .or(p.and_then(|p| p.store.gc_keep_history))
            .unwrap_or(gc::DEFAULT_KEEP_HISTORY),
        grace: grace
            .or(p.and_then(|p| p.store.gc_grace))
            .unwrap_or(gc::DEFAULT_GRACE),
    };
    let spinner = cx.printer.spinner("collecting");
    let report = gc::collect(&store, &opts).await;
    spinner.finish_and_clear();
    let report = report?;
    cx.printer.result(
        || {
            let verb = if report.dry_run { "would delete" } else { "deleted" };
            let mut s = String::new();
            for r in &report.removed {
                s.push_str(&format!(
                    "{verb} {:<15} {:>10}  {}{}\n",
                    r.class.name(),
                    human_bytes(r.size),
                    r.key,
                    r.upload_id
                        .as_deref()
                        .map(|id| format!(" (upload {id})"))
                        .unwrap_or_default()
                ));
            }
            let mut by_class = String::new();
            for class in [
                Class::BuildRecord,
                Class::CacheRecord,
                Class::RepositoryFile,
                Class::PoolFile,
                Class::Blob,
                Class::Upload,
            ] {
                let (n, bytes) = report
                    .removed
                    .iter()
                    .filter(|r| r.class == class)
                    .fold((0, 0), |(n, b), r| (n + 1, b + r.size));
                if n > 0 {
                    by_class.push_str(&format!(
                        "\n  {n} {}{} ({})",
                        class.name(),
                        if n == 1 { "" } else { "s" },
                        human_bytes(bytes)
                    ));
                }
            }
            s.push_str(&format!(
                "{url}: {verb} {} object{} ({}) of {} scanned; {} build{} removed, {} kept (grace {} s, last {} history entries per environment){by_class}\n",
                report.removed.len(),
                if report.removed.len() == 1 { "" } else { "s" },
                human_bytes(report.bytes),
                report.scanned,
                report.removed_builds.len(),
                if report.removed_builds.len() == 1 { "" } else { "s" },
                report.kept_builds.len(),
                report.grace,
                report.keep_history,
            ));
            s
        },
        || json!({ "ok": true, "store": url.to_string(), "report": report }),
    );
    Ok(())
}
