//! `pipe validate`: check `pipeline.toml` and say what a build would produce.

use std::path::Path;

use pipeline::Result;
use pipeline::build::plan::Plan;
use serde_json::{Value, json};

use super::human_bytes;
use crate::Context;

pub fn run(cx: &Context) -> Result<()> {
    let p = cx.pipeline_with_inputs()?;
    let store = cx.store_url(Some(p))?;
    let plan = Plan::new(p)?;
    let inputs: Vec<(String, u64, u64)> = p
        .packages
        .values()
        .map(|pkg| {
            let (files, bytes) = pkg
                .files
                .iter()
                .map(|f| count(&p.dir.join(&f.src)))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            (pkg.name.clone(), files, bytes)
        })
        .collect();
    let order: Vec<String> = p
        .promotion_order()
        .iter()
        .map(|e| match &e.from {
            Some(f) => format!("{} (from {f})", e.name),
            None => e.name.clone(),
        })
        .collect();

    cx.printer.result(
        || {
            let mut s = format!(
                "{} is valid: project {} {}\n",
                p.file.display(),
                p.project.name,
                p.project.version
            );
            let outputs: Vec<_> = plan.outputs().collect();
            if outputs.is_empty() {
                s.push_str("nothing to build yet: declare a [packages.NAME] section\n");
            } else {
                if !plan.steps.is_empty() {
                    s.push_str(&format!(
                        "a build runs {} step(s): {}\n",
                        plan.steps.len(),
                        plan.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
                s.push_str(&format!("a build would produce {} artifact(s):\n", outputs.len()));
                for (node, file) in &outputs {
                    s.push_str(&format!("  {:<8} {:<40} from {}\n", node.kind, file, node.component));
                }
            }
            for n in &plan.not_built {
                s.push_str(&format!("{}\n", n.warning()));
            }
            for (name, files, bytes) in &inputs {
                s.push_str(&format!(
                    "package {name}: {files} input file(s), {}\n",
                    human_bytes(*bytes)
                ));
            }
            if order.is_empty() {
                s.push_str("environments: none declared\n");
            } else {
                s.push_str(&format!("environments: {}\n", order.join(", ")));
            }
            s.push_str(&format!("store: {store}\n"));
            s
        },
        || {
            json!({
                "ok": true,
                "file": p.file,
                "project": p.project,
                "artifacts": plan.outputs().map(|(n, file)| json!({"kind": n.kind, "file": file, "from": n.component})).collect::<Vec<Value>>(),
                "plan": plan,
                "inputs": inputs.iter().map(|(n, f, b)| json!({"package": n, "files": f, "bytes": b})).collect::<Vec<Value>>(),
                "environments": p.promotion_order().iter().map(|e| json!({"name": e.name, "from": e.from})).collect::<Vec<Value>>(),
                "store": store.to_string(),
            })
        },
    );
    Ok(())
}

/// Files and bytes under `path` (a file or a directory, recursively).
fn count(path: &Path) -> (u64, u64) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| count(&e.path()))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
            })
            .unwrap_or((0, 0)),
        Ok(m) => (1, m.len()),
        Err(_) => (0, 0),
    }
}
