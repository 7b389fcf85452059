//! `pipe validate`: check `pipeline.toml` and say what a build would produce.

use std::path::Path;

use pipeline::Result;
use pipeline::model::{DiskFormat, ImageBase, PackageFormat, Pipeline};
use serde_json::{Value, json};

use super::human_bytes;
use crate::Context;

/// One artifact a build would produce.
struct Planned {
    kind: &'static str,
    from: String,
    file: String,
}

pub fn run(cx: &Context) -> Result<()> {
    let p = cx.pipeline()?;
    let store = cx.store_url(Some(p))?;
    let planned = plan(p);
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
            if planned.is_empty() {
                s.push_str("nothing to build yet: declare a [packages.NAME] section\n");
            } else {
                s.push_str(&format!("a build would produce {} artifact(s):\n", planned.len()));
                for a in &planned {
                    s.push_str(&format!("  {:<8} {:<40} from {}\n", a.kind, a.file, a.from));
                }
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
                "artifacts": planned.iter().map(|a| json!({"kind": a.kind, "file": a.file, "from": a.from})).collect::<Vec<Value>>(),
                "inputs": inputs.iter().map(|(n, f, b)| json!({"package": n, "files": f, "bytes": b})).collect::<Vec<Value>>(),
                "environments": p.promotion_order().iter().map(|e| json!({"name": e.name, "from": e.from})).collect::<Vec<Value>>(),
                "store": store.to_string(),
            })
        },
    );
    Ok(())
}

/// The artifacts a build of `p` produces, with the file names the build
/// stages give them (Debian and RPM naming conventions).
fn plan(p: &Pipeline) -> Vec<Planned> {
    let mut out = Vec::new();
    let v = &p.project.version;
    for pkg in p.packages.values() {
        for f in &pkg.formats {
            let (kind, file) = match f {
                PackageFormat::Deb => ("deb", format!("{}_{}_{}.deb", pkg.name, v, pkg.arch.deb())),
                PackageFormat::Rpm => (
                    "rpm",
                    format!("{}-{}-1.{}.rpm", pkg.name, v, pkg.arch.rpm()),
                ),
            };
            out.push(Planned {
                kind,
                from: format!("package {}", pkg.name),
                file,
            });
        }
    }
    for img in p.images.values() {
        let base = match &img.base {
            ImageBase::Scratch => "scratch".to_string(),
            ImageBase::OciArchive(path) => format!("oci-archive:{path}"),
            ImageBase::DockerArchive(path) => format!("docker-archive:{path}"),
        };
        let mut from = format!("image {} on {base}", img.name);
        if !img.packages.is_empty() {
            from.push_str(&format!(" + {}", img.packages.join(", ")));
        }
        out.push(Planned {
            kind: "oci",
            from,
            file: format!("{}.oci.tar", img.name),
        });
    }
    for m in p.machines.values() {
        let mut from = format!("machine {} on {}", m.name, m.base_rootfs);
        if !m.packages.is_empty() {
            from.push_str(&format!(" + {}", m.packages.join(", ")));
        }
        from.push_str(&format!(", {} disk", human_bytes(m.size)));
        for f in &m.formats {
            let ext = match f {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            };
            out.push(Planned {
                kind: "disk",
                from: from.clone(),
                file: format!("{}.{ext}", m.name),
            });
        }
    }
    out
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
