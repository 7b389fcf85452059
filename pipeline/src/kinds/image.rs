//! OCI images (`[images.NAME]`): built by `stages::oci` from the base and
//! the file trees of the listed packages, one layer per package.
//!
//! An image is several artifacts, not one: its manifest, its configuration
//! and each layer are one manifest entry and one blob each, so a layer that
//! did not change since the last build is the same blob (neither stored
//! nor uploaded again), and the manifest entry's sha256 is the image's
//! digest (the SLSA subject that names it). Their names are
//! `NAME.oci.KEY12.manifest.json`, `….config.json`, `….layer-NN` (KEY12: the
//! first 12 digits of the stage key, so a name always stands for the same
//! bytes); the manifest comes first. How many layers there are is known
//! once the base is read, so [`Kind::prepare`] gives the outputs. The
//! layout tarball `NAME.oci.tar` (what `skopeo`, `podman load` and
//! `docker load` read) is made from them by [`Kind::assemble`], also on a
//! cache hit: it is a derived file, written again byte for byte from the
//! blobs, not an artifact of its own.
//!
//! Labels: `org.opencontainers.image.version` (the project version),
//! `.created` (`SOURCE_DATE_EPOCH`), `.title` (the image name), `.revision`
//! and `.source` (the git commit and `origin` URL, when the project is in a
//! git checkout), then the user's `labels`, then `dev.pipe.stage-key`: the
//! image's stage cache key. That is how the image names its provenance
//! without a cycle (the provenance names the image by its digest, so the
//! image cannot contain the provenance's digest): the signed build manifest
//! lists the image's artifacts with this key, and the provenance attached
//! to the image in the registry (`subject` = this manifest) covers that
//! manifest's artifacts.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use stages::oci::{self as oci, Base, ImageBlobs, ImageConfig, ImageSpec, LayerCompression};

use super::{Kind, Prepared, StageContext, Written, package};
use crate::artifact::{Artifact, ArtifactKind, Component};
use crate::build::TOOL_VERSION;
use crate::build::plan::{ArtifactNode, PlanInput};
use crate::model::{Image, ImageBase, ImageCompression, Pipeline};
use crate::records::{Fragment, IndexedImage, Input};
use crate::store::digest;
use crate::{Error, Result};

/// The OCI image kind.
pub(super) struct OciImage;

/// The layout tarball of image `name` in a build directory.
pub(super) fn tarball_name(name: &str) -> String {
    format!("{name}.oci.tar")
}

/// What [`OciImage::prepare`] hands to `write`.
struct Work {
    spec: ImageSpec,
    outputs: Vec<String>,
}

fn image<'a>(p: &'a Pipeline, node: &ArtifactNode) -> Result<&'a Image> {
    let name = node.component.name();
    p.images.get(name).ok_or_else(|| Error::Usage {
        message: format!("the plan names image `{name}`, which pipeline.toml does not declare"),
        hint: Some("make the plan again from this pipeline.toml".into()),
    })
}

fn base_path(img: &Image) -> Option<&str> {
    match &img.base {
        ImageBase::Scratch => None,
        ImageBase::OciArchive(p) | ImageBase::DockerArchive(p) => Some(p),
    }
}

/// GOARCH of the packages (the first that is not `all`), `amd64` if all are.
fn architecture(p: &Pipeline, img: &Image) -> String {
    let deb = img
        .packages
        .iter()
        .filter_map(|n| p.packages.get(n))
        .map(|pkg| pkg.arch.deb())
        .find(|a| *a != "all")
        .unwrap_or("amd64");
    match deb {
        "armhf" => "arm",
        "i386" => "386",
        "ppc64el" => "ppc64le",
        other => other,
    }
    .to_string()
}

/// The git commit and `origin` URL of the project, when it is a checkout.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

impl Kind for OciImage {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::OciImage
    }

    fn nodes(&self, p: &Pipeline) -> Vec<ArtifactNode> {
        p.images
            .values()
            .map(|img| {
                let mut inputs = Vec::new();
                let mut after = Vec::new();
                if let Some(b) = base_path(img) {
                    inputs.push(PlanInput::File {
                        src: b.to_string(),
                        dst: "(base image)".into(),
                    });
                }
                for pkg in img.packages.iter().filter_map(|n| p.packages.get(n)) {
                    for f in &pkg.files {
                        inputs.push(PlanInput::File {
                            src: f.src.clone(),
                            dst: f.dst.clone(),
                        });
                        after.extend(f.from_step.clone());
                    }
                }
                after.sort();
                after.dedup();
                ArtifactNode {
                    id: format!("{} {}", ArtifactKind::OciImage, img.name),
                    kind: ArtifactKind::OciImage,
                    component: Component::Image(img.name.clone()),
                    inputs,
                    after_steps: after,
                    outputs: vec![tarball_name(&img.name)],
                    cache_key: None,
                }
            })
            .collect()
    }

    fn prepare(&self, p: &Pipeline, cx: &StageContext, node: &ArtifactNode) -> Result<Prepared> {
        let img = image(p, node)?;
        let arch = architecture(p, img);
        let mut key = crate::build::key::KeyBuilder::new();
        key.field("tool", TOOL_VERSION.as_bytes());
        key.field("kind", b"oci-image");
        key.field("version", p.project.version.as_bytes());
        key.field("epoch", cx.epoch.to_string().as_bytes());
        key.field("arch", arch.as_bytes());
        key.field("section", &crate::json::to_vec(img));
        let mut inputs = Vec::new();
        let base = match &img.base {
            ImageBase::Scratch => Base::Scratch,
            ImageBase::OciArchive(b) => Base::OciArchive(cx.dir.join(b)),
            ImageBase::DockerArchive(b) => Base::DockerArchive(cx.dir.join(b)),
        };
        if let Some(b) = base_path(img) {
            // The base is an input like any file: its digest keys the stage
            // and is a resolved dependency of the provenance.
            let blob = digest::hash_file_blocking(&cx.dir.join(b))?;
            key.field("base", blob.blake3.as_bytes());
            inputs.push(Input {
                path: b.to_string(),
                blob,
            });
        }
        let base_info = oci::inspect_base(&base, &arch)?;
        let mut layers = Vec::new();
        for name in &img.packages {
            let pkg = p.packages.get(name).ok_or_else(|| Error::Usage {
                message: format!(
                    "image `{}` names package `{name}`, which is not declared",
                    img.name
                ),
                hint: None,
            })?;
            // The package's tree, keyed as its .deb keys it (paths, modes,
            // content digests, section).
            let prepared = package::prepare(p, cx, pkg, ArtifactKind::Deb)?;
            key.field("package", format!("{name}\0{}", prepared.key).as_bytes());
            inputs.extend(prepared.inputs.iter().cloned());
            layers.push(oci::Layer {
                package: name.clone(),
                entries: package::entries(prepared),
            });
        }
        let mut labels = BTreeMap::new();
        labels.insert(
            "org.opencontainers.image.version".to_string(),
            p.project.version.clone(),
        );
        labels.insert(
            "org.opencontainers.image.created".to_string(),
            keys::Timestamp::from_unix(cx.epoch).to_string(),
        );
        labels.insert(
            "org.opencontainers.image.title".to_string(),
            img.name.clone(),
        );
        if let Some(rev) = git(&cx.dir, &["rev-parse", "HEAD"]) {
            labels.insert("org.opencontainers.image.revision".to_string(), rev);
        }
        if let Some(src) = git(&cx.dir, &["config", "--get", "remote.origin.url"]) {
            labels.insert("org.opencontainers.image.source".to_string(), src);
        }
        key.field("labels", &crate::json::to_vec(&labels));
        labels.extend(img.labels.clone());
        let key = key.finish();
        labels.insert("dev.pipe.stage-key".to_string(), key.clone());

        let stem = format!("{}.oci.{}", img.name, &key[..12]);
        let base_layers = base_info.as_ref().map_or(0, |b| b.layers);
        let mut outputs = vec![
            format!("{stem}.manifest.json"),
            format!("{stem}.config.json"),
        ];
        for i in 0..base_layers + layers.len() {
            outputs.push(format!("{stem}.layer-{i:02}"));
        }
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        inputs.dedup_by(|a, b| a.path == b.path);
        let spec = ImageSpec {
            base,
            layers,
            config: ImageConfig {
                entrypoint: img.entrypoint.clone(),
                cmd: img.cmd.clone(),
                env: img.env.clone(),
                expose: img.expose.clone(),
                working_dir: img.workdir.clone(),
                user: img.user.clone(),
                labels,
            },
            created: cx.epoch,
            compression: match img.compression {
                ImageCompression::Gzip => LayerCompression::Gzip,
                ImageCompression::Zstd => LayerCompression::Zstd,
            },
            architecture: arch,
        };
        Ok(Prepared {
            key,
            inputs,
            outputs: Some(outputs.clone()),
            work: Box::new(Work { spec, outputs }),
        })
    }

    fn write(
        &self,
        _p: &Pipeline,
        _cx: &StageContext,
        _node: &ArtifactNode,
        prepared: Prepared,
        out_dir: &Path,
    ) -> Result<Written> {
        #[allow(clippy::expect_used, reason = "`prepare` of this kind made the work")]
        let work = *prepared
            .work
            .downcast::<Work>()
            .expect("an image node's work is its spec");
        let blobs = tempfile::Builder::new()
            .prefix(".oci-")
            .tempdir_in(out_dir)
            .map_err(|e| Error::io(out_dir, e))?;
        let built = oci::build_image(&work.spec, blobs.path())?;
        let parts = std::iter::once(&built.manifest)
            .chain([&built.config])
            .chain(&built.layers);
        for (blob, name) in parts.zip(&work.outputs) {
            let (from, to) = (built.path(blob), out_dir.join(name));
            // Two packages with the same tree give the same layer blob:
            // link, not move.
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
                .map_err(|e| Error::io(&to, e))?;
        }
        Ok(Written::default())
    }

    fn describe(&self, _path: &Path, a: &Artifact, _file_time: u64) -> Result<Option<Fragment>> {
        if !a.name.ends_with(".manifest.json") {
            return Ok(None);
        }
        Ok(Some(Fragment::Image(IndexedImage {
            image: a.component.name().to_string(),
            artifact: a.name.clone(),
            sha256: a.blob.sha256.clone(),
            blob: a.blob.clone(),
        })))
    }

    fn pool_key(&self, _a: &Artifact) -> Option<String> {
        None
    }

    fn deploy_arch(&self, _a: &Artifact) -> Option<String> {
        None
    }

    fn assemble(
        &self,
        p: &Pipeline,
        node: &ArtifactNode,
        outputs: &[Artifact],
        out_dir: &Path,
    ) -> Result<()> {
        #[allow(
            clippy::expect_used,
            reason = "an image node always lists its manifest among its outputs"
        )]
        let manifest = outputs
            .iter()
            .find(|a| a.name.ends_with(".manifest.json"))
            .expect("an image has a manifest");
        let path = out_dir.join(&manifest.name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let blobs = ImageBlobs::from_manifest(&bytes).map_err(|detail| Error::Verify {
            what: manifest.name.clone(),
            detail,
        })?;
        let by_digest: BTreeMap<String, PathBuf> = outputs
            .iter()
            .map(|a| (format!("sha256:{}", a.blob.sha256), out_dir.join(&a.name)))
            .collect();
        let name = node.component.name();
        oci::write_layout(
            &out_dir.join(tarball_name(name)),
            &blobs,
            name,
            &p.project.version,
            |b| {
                let path = by_digest.get(&b.digest).ok_or_else(|| {
                    std::io::Error::other(format!("no artifact holds blob {}", b.digest))
                })?;
                Ok(Box::new(std::fs::File::open(path)?) as Box<dyn Read>)
            },
        )?;
        Ok(())
    }
}
