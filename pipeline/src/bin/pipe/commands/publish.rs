//! `pipe publish`: upload a build's blobs, then its signed manifest and
//! provenance.

use pipeline::Result;
use pipeline::build::build_dir;
use pipeline::publish::{Progress, publish_with};
use serde_json::json;

use super::human_bytes;
use crate::Context;

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub async fn run(cx: &Context, build: Option<&str>, read_back: bool) -> Result<()> {
    let p = cx.pipeline()?;
    let dir = build_dir(&cx.dir, build)?;
    let url = cx.store_url(Some(p))?;
    // A blob reused rather than uploaded is freshened past a quarter of
    // gc's grace, so a gc running meanwhile keeps it (`pipeline::gc`).
    let grace = p.store.gc_grace.unwrap_or(pipeline::gc::DEFAULT_GRACE);
    let store = cx.open_store(&url).await?.freshening(grace / 4);
    let total: u64 = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let registry = match &p.registry {
        Some(_) => Some((
            super::registry::open(p)?,
            super::keys::project_keyring(&cx.signing_key()?, &cx.signing_key_path()?)?,
        )),
        None => None,
    };
    // Two bars at once: the store's upload and, beside it, the registry's.
    let bars = indicatif::MultiProgress::new();
    let shown = |b: indicatif::ProgressBar| if b.is_hidden() { b } else { bars.add(b) };
    let bar = Bar(shown(cx.printer.bytes_bar(total, "publishing")));
    let push_bar = super::registry::Bar(shown(cx.printer.bytes_bar(0, "pushing")));
    // The images' blobs go to `[registry]` while the store takes the build:
    // blobs alone are seen by nobody. Manifests and tags follow once the
    // store has the build and its records verify.
    let blobs = async {
        match &registry {
            Some((reg, _)) => pipeline::registry::push_build_blobs(reg, &dir, &push_bar)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let (report, prepushed) = tokio::join!(publish_with(&dir, &store, &bar, read_back), blobs);
    bar.0.finish_and_clear();
    let report = report?;
    // Then the images, tagged with the build id. The store has the build
    // already: a registry that fails leaves it published, and the same
    // command again finishes the push.
    let images = match (&registry, prepushed) {
        (Some((reg, ring)), prepushed) => {
            let pushed = match prepushed {
                Ok(prepushed) => {
                    pipeline::registry::publish_build(
                        reg,
                        &store,
                        &dir,
                        &report.build,
                        ring,
                        &push_bar,
                        &prepushed.unwrap_or_default(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            push_bar.0.finish_and_clear();
            pushed?
        }
        (None, _) => Vec::new(),
    };
    cx.printer.result(
        || {
            let mut s = String::new();
            for a in &report.artifacts {
                let what = if a.repaired {
                    "missing or damaged in the store: uploaded again"
                } else if a.uploaded {
                    "uploaded"
                } else {
                    "already in the store"
                };
                s.push_str(&format!(
                    "{:<32} {:>10}  {what}\n",
                    a.name,
                    human_bytes(a.size)
                ));
            }
            s.push_str(&format!(
                "build {} {} to {url}: {} uploaded, {} skipped (already there)\n",
                report.build,
                if report.newly_published {
                    "published"
                } else {
                    "was already published"
                },
                human_bytes(report.bytes_uploaded),
                human_bytes(report.bytes_skipped)
            ));
            for i in &images {
                s.push_str(&format!(
                    "image {} pushed as {}: {} uploaded, {} skipped (already in the registry)\n",
                    i.reference,
                    i.tag,
                    human_bytes(i.report.bytes_uploaded),
                    human_bytes(i.report.bytes_skipped)
                ));
            }
            s
        },
        || json!({ "ok": true, "store": url.to_string(), "report": report, "images": images }),
    );
    Ok(())
}
