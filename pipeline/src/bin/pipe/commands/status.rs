//! `pipe status`: what the store holds, and what each environment points at.
//! Reads only; never writes to the store.

use std::collections::BTreeSet;

use pipeline::Result;
use pipeline::store::layout;
use serde_json::{Value, json};

use super::human_bytes;
use crate::Context;

pub async fn run(cx: &Context) -> Result<()> {
    // Without a pipeline.toml, status still reports on an explicit store.
    let pipeline = if cx.has_pipeline() || cx.store_override.is_none() {
        Some(cx.pipeline()?)
    } else {
        None
    };
    let url = cx.store_url(pipeline)?;
    let store = cx.open_store(&url).await?;
    let root = store.root().await?;

    let blobs = store.list(layout::BLOBS).await?;
    let blob_bytes: u64 = blobs.iter().map(|b| b.size).sum();
    let builds: BTreeSet<String> = store
        .list(layout::BUILDS)
        .await?
        .iter()
        .filter_map(|o| layout::build_of(&o.key).map(str::to_string))
        .collect();

    // Declared environments first, in promotion order; then any the store
    // knows that the file no longer declares.
    let mut envs: Vec<(String, Option<String>)> = pipeline
        .as_ref()
        .map(|p| {
            p.promotion_order()
                .iter()
                .map(|e| (e.name.clone(), e.from.clone()))
                .collect()
        })
        .unwrap_or_default();
    for o in store.list(layout::ENVS).await? {
        if let Some(name) = layout::env_of(&o.key)
            && !envs.iter().any(|(n, _)| n == name)
        {
            envs.push((name.to_string(), None));
        }
    }
    // Builds made here and not necessarily published: `.pipe/builds/<id>/`.
    let latest = std::fs::read_to_string(
        cx.dir
            .join(pipeline::build::BUILDS_DIR)
            .join(pipeline::build::LATEST),
    )
    .map(|s| s.trim().to_string())
    .ok();
    let mut local_builds: Vec<String> = std::fs::read_dir(cx.dir.join(pipeline::build::BUILDS_DIR))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join(pipeline::build::files::MANIFEST).exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    local_builds.sort();
    let mut pointers = Vec::new();
    for (name, from) in &envs {
        let (head, _) = pipeline::records::history::read_pointer(&store, name).await?;
        let build =
            head.map(|h| format!("{} (entry {}, {})", h.entry.build, h.entry.seq, h.entry.at));
        pointers.push((name.clone(), from.clone(), build));
    }

    cx.printer.result(
        || {
            let mut s = format!("store: {url}");
            match &root {
                Some(r) => s.push_str(&format!(" (format {})\n", r.format)),
                None => s.push_str(" (empty: nothing published yet)\n"),
            }
            s.push_str(&format!("blobs: {} ({})\n", blobs.len(), human_bytes(blob_bytes)));
            s.push_str(&format!("published builds: {}\n", builds.len()));
            for b in &builds {
                s.push_str(&format!("  {b}\n"));
            }
            if !local_builds.is_empty() {
                s.push_str(&format!("local builds: {}\n", local_builds.len()));
                for b in &local_builds {
                    let mark = if latest.as_deref() == Some(b.as_str()) { "  (latest)" } else { "" };
                    s.push_str(&format!("  {b}{mark}\n"));
                }
            }
            if pointers.is_empty() {
                s.push_str("environments: none declared\n");
            } else {
                s.push_str("environments:\n");
                for (name, from, build) in &pointers {
                    let from = from.as_ref().map(|f| format!("(from {f})")).unwrap_or_default();
                    let build = build.as_deref().unwrap_or("no build yet");
                    s.push_str(&format!("  {name:<12} {from:<16} {build}\n"));
                }
            }
            s
        },
        || {
            json!({
                "ok": true,
                "store": { "url": url.to_string(), "format": root.as_ref().map(|r| r.format) },
                "blobs": { "count": blobs.len(), "bytes": blob_bytes },
                "builds": builds,
                "local_builds": local_builds,
                "latest": latest,
                "environments": pointers.iter().map(|(n, f, b)| json!({"name": n, "from": f, "build": b})).collect::<Vec<Value>>(),
            })
        },
    );
    Ok(())
}
