//! `pipe verify`: check a build's signatures and every artifact against them.

use keys::Keyring;
use pipeline::Result;
use pipeline::build::build_dir;
use pipeline::build::verify::{verify_build, verify_published};
use pipeline::store::layout::manifest_shard;
use serde_json::json;

use crate::Context;
use crate::cli::VerifyArgs;

pub async fn run(cx: &Context, args: &VerifyArgs) -> Result<()> {
    let keyring = Keyring::load(&cx.dir.join(&args.keyring))?;
    // With `--store`, the published build is verified there (no checkout
    // needed); otherwise a local build directory.
    let report = match &cx.store_override {
        Some(_) => {
            let build = args
                .build
                .as_deref()
                .ok_or_else(|| pipeline::Error::Usage {
                    message: "`pipe verify --store URL` needs the BUILD to verify".into(),
                    hint: Some("`pipe status --store URL` lists the published builds".into()),
                })?;
            let url = cx.store_url(cx.pipeline_if_any()?)?;
            let store = cx.open_store(&url).await?;
            verify_published(&store, build, &keyring).await?
        }
        None => {
            let dir = build_dir(&cx.dir, args.build.as_deref())?;
            verify_build(&dir, &keyring).await?
        }
    };
    cx.printer.result(
        || {
            let mut s = String::new();
            for c in &report.checks {
                s.push_str(&format!("ok  {:<32} {}\n", c.what, c.detail));
            }
            s.push_str(&format!("build {} verified\n", report.build));
            s
        },
        || {
            json!({
                "ok": true,
                "build": report.build,
                "signer": report.signer,
                "checks": report.checks,
                // What the verified records hold, with each blob's store key.
                "artifacts": report.artifacts.iter().map(|a| json!({
                    "name": a.name,
                    "kind": a.kind,
                    "component": a.component,
                    "store_key": a.blob.key(),
                    "size": a.blob.size,
                    "sha256": a.blob.sha256,
                    "blake3": a.blob.blake3,
                })).collect::<Vec<_>>(),
                "inputs": report.inputs.iter().map(|i| json!({
                    "path": i.path,
                    "size": i.blob.size,
                    "sha256": i.blob.sha256,
                    "blake3": i.blob.blake3,
                })).collect::<Vec<_>>(),
                "shards": report.shards.iter().map(|s| json!({
                    "bucket": s.bucket,
                    "store_key": manifest_shard(&s.blob.blake3),
                    "size": s.blob.size,
                    "sha256": s.blob.sha256,
                    "blake3": s.blob.blake3,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}
