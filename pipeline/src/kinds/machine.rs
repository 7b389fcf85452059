//! Machine disk images: baked by `stages::machine` from `[machines.NAME]`,
//! shown to autoscalers by the machine pointer view
//! (`crate::views` `machines/NAME/ENV.json`).
//!
//! One node per machine; its outputs are `NAME.raw` and/or `NAME.qcow2`
//! (as `formats` lists) and `NAME.bake.json`, the bake record: the base's
//! digest, the packages installed, the package manager, the filesystem
//! UUID and what generalisation removed. Each is a blob and a manifest
//! entry, so the record is signed with the build.
//!
//! The cache key covers the base tarball's digest, the post-install
//! script's digest, the size and formats, and the cache key of every listed
//! package in each of its formats (which covers its files, scripts and
//! section): a change to any of them rebakes; a deploy-time file
//! (`[deploy] files`) or a package the machine does not list does not. The
//! packages are written again from their prepared trees into the bake's
//! scratch directory (the same bytes as the build's own artifacts: both are
//! deterministic), so a machine node does not wait for the package nodes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{HashedOutput, Kind, Prepared, StageContext, Written};
use crate::artifact::{Artifact, ArtifactKind, Component};
use crate::build::TOOL_VERSION;
use crate::build::plan::{ArtifactNode, PlanInput};
use crate::model::{DiskFormat, Machine, Pipeline};
use crate::records::{Fragment, IndexedMachine, Input};
use crate::store::digest;
use crate::{Error, Result};

/// The machine image kind.
pub(super) struct MachineImage;

/// The file name of the bake record of `machine`.
pub(crate) fn bake_record_name(machine: &str) -> String {
    format!("{machine}.bake.json")
}

/// The file name of `machine`'s image in `format`.
pub(crate) fn image_name(machine: &str, format: DiskFormat) -> String {
    image_name_of(machine, stage_format(format))
}

/// The file name of `machine`'s image in the stage's `format`.
fn image_name_of(machine: &str, format: stages::machine::DiskFormat) -> String {
    format!("{machine}.{}", format.name())
}

fn stage_format(f: DiskFormat) -> stages::machine::DiskFormat {
    match f {
        DiskFormat::Raw => stages::machine::DiskFormat::Raw,
        DiskFormat::Qcow2 => stages::machine::DiskFormat::Qcow2,
    }
}

fn machine<'a>(p: &'a Pipeline, node: &ArtifactNode) -> Result<&'a Machine> {
    let name = node.component.name();
    p.machines.get(name).ok_or_else(|| Error::Usage {
        message: format!("the plan names machine `{name}`, which pipeline.toml does not declare"),
        hint: Some("make the plan again from this pipeline.toml".into()),
    })
}

/// The package nodes (every format) of the packages `m` lists.
fn package_nodes(p: &Pipeline, m: &Machine) -> Vec<ArtifactNode> {
    [ArtifactKind::Deb, ArtifactKind::Rpm]
        .into_iter()
        .flat_map(|k| super::of(k).nodes(p))
        .filter(|n| {
            m.packages
                .iter()
                .any(|name| n.component == Component::Package(name.clone()))
        })
        .collect()
}

/// What [`MachineImage::write`] needs from `prepare`.
struct Work {
    base: PathBuf,
    post_install: Option<PathBuf>,
    packages: Vec<(ArtifactNode, Prepared)>,
}

/// The bake record, `NAME.bake.json`.
#[derive(Serialize)]
struct BakeRecord<'a> {
    format: u32,
    machine: &'a str,
    base: &'a Input,
    package_manager: Option<&'static str>,
    packages: Vec<String>,
    post_install: Option<&'a str>,
    size: u64,
    needed: u64,
    filesystem_uuid: &'a str,
    removed: &'a [String],
}

impl Kind for MachineImage {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::MachineImage
    }

    fn nodes(&self, p: &Pipeline) -> Vec<ArtifactNode> {
        p.machines
            .values()
            .map(|m| {
                let mut inputs = vec![PlanInput::Rootfs {
                    path: m.base_rootfs.clone(),
                }];
                inputs.extend(
                    m.packages
                        .iter()
                        .map(|n| PlanInput::Package { name: n.clone() }),
                );
                if let Some(s) = &m.post_install {
                    inputs.push(PlanInput::Script {
                        which: "post_install".into(),
                        path: s.clone(),
                    });
                }
                let mut after: Vec<String> = package_nodes(p, m)
                    .into_iter()
                    .flat_map(|n| n.after_steps)
                    .collect();
                after.sort();
                after.dedup();
                let mut outputs: Vec<String> =
                    m.formats.iter().map(|f| image_name(&m.name, *f)).collect();
                outputs.push(bake_record_name(&m.name));
                ArtifactNode {
                    id: format!("{} {}", ArtifactKind::MachineImage, m.name),
                    kind: ArtifactKind::MachineImage,
                    component: Component::Machine(m.name.clone()),
                    inputs,
                    after_steps: after,
                    outputs,
                    cache_key: None,
                }
            })
            .collect()
    }

    fn prepare(&self, p: &Pipeline, cx: &StageContext, node: &ArtifactNode) -> Result<Prepared> {
        let m = machine(p, node)?;
        let mut key = crate::build::key::KeyBuilder::new();
        key.field("tool", TOOL_VERSION.as_bytes());
        key.field("kind", b"machine-image");
        key.field("epoch", cx.epoch.to_string().as_bytes());
        key.field("size", m.size.to_string().as_bytes());
        for f in &m.formats {
            key.field("format", stage_format(*f).name().as_bytes());
        }
        let mut inputs = Vec::new();
        let base = cx.dir.join(&m.base_rootfs);
        // Hundreds of MiB: hashed again only when the file changed.
        let blob = crate::build::reuse::hash_input(&cx.dir, &base)?;
        key.field("base", blob.blake3.as_bytes());
        inputs.push(Input {
            path: m.base_rootfs.clone(),
            blob,
        });
        let post_install = match &m.post_install {
            Some(s) => {
                let path = cx.dir.join(s);
                let blob = digest::hash_file_blocking(&path)?;
                key.field("post_install", blob.blake3.as_bytes());
                inputs.push(Input {
                    path: s.clone(),
                    blob,
                });
                Some(path)
            }
            None => None,
        };
        let mut packages = Vec::new();
        for n in package_nodes(p, m) {
            let prepared = super::of(n.kind).prepare(p, cx, &n)?;
            key.field("package", format!("{}\0{}", n.id, prepared.key).as_bytes());
            inputs.extend(prepared.inputs.iter().cloned());
            packages.push((n, prepared));
        }
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        inputs.dedup_by(|a, b| a.path == b.path);
        Ok(Prepared {
            key: key.finish(),
            inputs,
            outputs: None,
            work: Box::new(Work {
                base,
                post_install,
                packages,
            }),
        })
    }

    fn write(
        &self,
        p: &Pipeline,
        cx: &StageContext,
        node: &ArtifactNode,
        prepared: Prepared,
        out_dir: &Path,
    ) -> Result<Written> {
        let m = machine(p, node)?;
        let key = prepared.key.clone();
        #[allow(
            clippy::expect_used,
            reason = "`prepare` of this kind recorded the base among the inputs"
        )]
        let base_input = prepared
            .inputs
            .iter()
            .find(|i| i.path == m.base_rootfs)
            .cloned()
            .expect("prepare recorded the base");
        #[allow(clippy::expect_used, reason = "`prepare` of this kind made the work")]
        let work = *prepared
            .work
            .downcast::<Work>()
            .expect("prepared by MachineImage::prepare");
        // The packages, written again into a scratch directory next to the
        // outputs (same filesystem: the bake's tree goes there too).
        let scratch = tempfile::Builder::new()
            .prefix(&format!(".machine-{}-", m.name))
            .tempdir_in(out_dir)
            .map_err(|e| Error::io(out_dir, e))?;
        let mut files: Vec<stages::machine::PackageFiles> = m
            .packages
            .iter()
            .map(|n| stages::machine::PackageFiles {
                name: n.clone(),
                deb: None,
                rpm: None,
            })
            .collect();
        for (n, prepared) in work.packages {
            // A package kind leaves nothing to clean up or pre-hashed.
            super::of(n.kind).write(p, cx, &n, prepared, scratch.path())?;
            let path = scratch.path().join(n.single_output()?);
            if let Some(f) = files
                .iter_mut()
                .find(|f| Component::Package(f.name.clone()) == n.component)
            {
                match n.kind {
                    ArtifactKind::Deb => f.deb = Some(path),
                    ArtifactKind::Rpm => f.rpm = Some(path),
                    ArtifactKind::OciImage | ArtifactKind::MachineImage => {}
                }
            }
        }
        let bake = stages::machine::Bake {
            name: m.name.clone(),
            base: work.base,
            packages: files,
            post_install: work.post_install,
            size: m.size,
            formats: m.formats.iter().map(|f| stage_format(*f)).collect(),
            epoch: cx.epoch,
            identity: key,
            work_dir: scratch.path().to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            tool_path: None,
        };
        let (baked, tree) = stages::machine::bake_deferred(&bake, &Traced { machine: &m.name })?;
        if !baked.post_install_output.is_empty() {
            tracing::info!(machine = %m.name, output = %baked.post_install_output, "post-install script output");
        }
        let record = BakeRecord {
            format: 1,
            machine: &m.name,
            base: &base_input,
            package_manager: baked.manager.map(|m| m.name()),
            packages: m.packages.clone(),
            post_install: m.post_install.as_deref(),
            size: m.size,
            needed: baked.needed,
            filesystem_uuid: &baked.uuid,
            removed: &baked.removed,
        };
        let path = out_dir.join(bake_record_name(&m.name));
        let mut text = crate::json::to_vec_pretty(&record);
        text.push(b'\n');
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        // The raw image was hashed as it was written: stored with those
        // digests. The scratch tree (and the packages written for it) is
        // removed while they are stored.
        let hashed = baked
            .images
            .iter()
            .filter_map(|img| {
                let d = img.digest.as_ref()?;
                Some(HashedOutput {
                    name: image_name_of(&m.name, img.format),
                    blob: crate::store::BlobRef {
                        blake3: d.blake3.clone(),
                        sha256: d.sha256.clone(),
                        size: d.size,
                    },
                    metadata: d.metadata.clone(),
                })
            })
            .collect();
        Ok(Written {
            hashed,
            cleanup: Some(Box::new(move || {
                tree.remove()?;
                let path = scratch.path().to_path_buf();
                scratch.close().map_err(|e| Error::io(&path, e))
            })),
        })
    }

    fn describe(&self, _path: &Path, a: &Artifact, _file_time: u64) -> Result<Option<Fragment>> {
        let Component::Machine(machine) = &a.component else {
            return Ok(None);
        };
        let Some(format) = a
            .name
            .strip_prefix(&format!("{machine}."))
            .filter(|f| *f == "raw" || *f == "qcow2")
        else {
            return Ok(None);
        };
        Ok(Some(Fragment::Machine(IndexedMachine {
            artifact: a.name.clone(),
            machine: machine.clone(),
            format: format.to_string(),
            sha256: a.blob.sha256.clone(),
            blake3: a.blob.blake3.clone(),
            size: a.blob.size,
        })))
    }

    fn pool_key(&self, _a: &Artifact) -> Option<String> {
        None
    }

    fn signs(&self) -> bool {
        // A machine may install .rpm packages, which are signed: its key
        // covers theirs, so it is known only with the signing key.
        true
    }

    fn versioned(&self) -> bool {
        false
    }

    fn deploy_arch(&self, _a: &Artifact) -> Option<String> {
        None
    }
}

/// Bake progress as tracing events (`-v` shows them).
struct Traced<'a> {
    machine: &'a str,
}

impl stages::machine::Reporter for Traced<'_> {
    fn step(&self, step: stages::machine::Step) {
        tracing::info!(machine = self.machine, ?step, "bake");
    }
}
