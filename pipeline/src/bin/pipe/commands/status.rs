//! `pipe status`: what the store holds, and what each environment points at.
//! Reads only; never writes to the store.

use pipeline::Result;
use serde_json::{Value, json};

use super::human_bytes;
use crate::Context;

pub async fn run(cx: &Context) -> Result<()> {
    // Without a pipeline.toml, status still reports on an explicit store.
    let pipeline = cx.pipeline_if_any()?;
    let url = cx.store_url(pipeline)?;
    let store = cx.open_store(&url).await?;
    // The project keyring, when this checkout has the signing key: image
    // digests are shown only from a build index it verifies.
    let ring = match (cx.signing_key(), cx.signing_key_path()) {
        (Ok(key), Ok(path)) => super::keys::project_keyring(&key, &path).ok(),
        _ => None,
    };
    let st = pipeline::status::status(&store, pipeline, &cx.dir, ring.as_ref()).await?;
    let (blobs, blob_bytes, builds, local_builds, latest) = (
        st.blobs,
        st.blob_bytes,
        &st.builds,
        &st.local_builds,
        &st.latest,
    );
    // Name, `from`, build line, images.
    type Pointer = (String, Option<String>, Option<String>, Vec<String>);
    let pointers: Vec<Pointer> = st
        .environments
        .iter()
        .map(|e| {
            let build = e
                .head
                .as_ref()
                .map(|h| format!("{} (entry {}, {})", h.build, h.seq, h.at));
            (e.name.clone(), e.from.clone(), build, e.images.clone())
        })
        .collect();

    cx.printer.answer(
        || {
            let mut s = format!("store: {url}");
            match st.format {
                Some(f) => s.push_str(&format!(" (format {f})\n")),
                None => s.push_str(" (empty: nothing published yet)\n"),
            }
            s.push_str(&format!("blobs: {} ({})\n", blobs, human_bytes(blob_bytes)));
            s.push_str(&format!("published builds: {}\n", builds.len()));
            for b in builds {
                s.push_str(&format!("  {b}\n"));
            }
            if !local_builds.is_empty() {
                s.push_str(&format!("local builds: {}\n", local_builds.len()));
                for b in local_builds {
                    let mark = if latest.as_deref() == Some(b.as_str()) {
                        "  (latest)"
                    } else {
                        ""
                    };
                    s.push_str(&format!("  {b}{mark}\n"));
                }
            }
            if pointers.is_empty() {
                s.push_str("environments: none declared\n");
            } else {
                s.push_str("environments:\n");
                for (name, from, build, images) in &pointers {
                    let from = from
                        .as_ref()
                        .map(|f| format!("(from {f})"))
                        .unwrap_or_default();
                    let build = build.as_deref().unwrap_or("no build yet");
                    s.push_str(&format!("  {name:<12} {from:<16} {build}\n"));
                    for i in images {
                        s.push_str(&format!("  {:<12} image {i}\n", ""));
                    }
                }
            }
            s
        },
        || {
            json!({
                "ok": true,
                "store": { "url": url.to_string(), "format": st.format },
                "blobs": { "count": blobs, "bytes": blob_bytes },
                "builds": builds,
                "local_builds": local_builds,
                "latest": latest,
                "environments": st.environments.iter().map(|e| json!({
                    "name": e.name,
                    "from": e.from,
                    "build": e.head.as_ref().map(|h| &h.build),
                    "seq": e.head.as_ref().map(|h| h.seq),
                    "at": e.head.as_ref().map(|h| &h.at),
                    "action": e.head.as_ref().map(|h| &h.action),
                    "actor": e.head.as_ref().map(|h| &h.actor),
                    "images": e.images,
                })).collect::<Vec<Value>>(),
            })
        },
    );
    Ok(())
}
