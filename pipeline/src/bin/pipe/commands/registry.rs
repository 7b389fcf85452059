//! `pipe registry seed`, and the progress bar every registry push draws.

use pipeline::registry::{
    BlobOutcome, CredentialSources, PushProgress, Registry, seed as seed_registry,
};
use pipeline::{Error, Result};
use serde_json::json;
use stages::oci::BlobRef;

use super::human_bytes;
use crate::Context;

/// Bytes handled (uploaded, or found in the registry) on one bar.
pub struct Bar(pub indicatif::ProgressBar);

impl PushProgress for Bar {
    fn upload_started(&self, blob: &BlobRef) {
        self.0.inc_length(blob.size);
        self.0.set_message(format!("pushing {}", &blob.hex()[..12]));
    }

    fn uploaded(&self, _blob: &BlobRef, bytes: u64) {
        self.0.inc(bytes);
    }

    fn blob_done(&self, _blob: &BlobRef, _outcome: BlobOutcome) {}
}

/// The registry of `pipeline.toml`, or a usage error saying how to set one.
pub fn open(p: &pipeline::model::Pipeline) -> Result<Registry> {
    let r = p.registry.as_ref().ok_or_else(|| Error::Usage {
        message: "no `[registry]` in pipeline.toml".into(),
        hint: Some("add `[registry]` with `url = \"HOST[:PORT]/NAMESPACE\"`".into()),
    })?;
    Registry::new(&r.url, r.insecure, &CredentialSources::from_env())
}

pub async fn seed(cx: &Context) -> Result<()> {
    let p = cx.pipeline()?;
    let reg = open(p)?;
    let url = cx.store_url(Some(p))?;
    let store = cx.open_store(&url).await?;
    let envs: Vec<String> = p.promotion_order().iter().map(|e| e.name.clone()).collect();
    let bar = Bar(cx.printer.bytes_bar(0, "seeding"));
    let report = seed_registry(&reg, &store, &envs, &bar).await;
    bar.0.finish_and_clear();
    let report = report?;
    cx.printer.result(
        || {
            let mut s = String::new();
            for i in &report.pushed {
                s.push_str(&format!(
                    "{}  pushed: {} uploaded, {} already there\n",
                    i.tag,
                    human_bytes(i.report.bytes_uploaded),
                    human_bytes(i.report.bytes_skipped)
                ));
            }
            for t in &report.tags {
                let what = if t.moved { "tagged" } else { "already tagged" };
                s.push_str(&format!("{}  {what} {}\n", t.tag, t.digest));
            }
            s.push_str(&format!(
                "registry {} seeded from {url}: {} build(s) with images, {} image(s) pushed, {} already there, {} environment tag(s); {} uploaded, {} skipped\n",
                reg.host(),
                report.builds,
                report.pushed.len(),
                report.present,
                report.tags.len(),
                human_bytes(report.bytes_uploaded),
                human_bytes(report.bytes_skipped)
            ));
            s
        },
        || json!({ "ok": true, "registry": reg.host(), "report": report }),
    );
    Ok(())
}
