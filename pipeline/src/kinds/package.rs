//! What the package kinds (deb, rpm) share: the nodes of a package, its file
//! tree, its cache key and the model's fields in the stages' terms.
//!
//! The key covers the package's section of `pipeline.toml`, the project
//! version, the timestamp, every packaged file (path, mode, content digest),
//! the maintainer scripts, the signing key (for rpm) and the pipe version.

use std::path::{Path, PathBuf};

use super::{Prepared, StageContext};
use crate::artifact::ArtifactKind;
use crate::build::TOOL_VERSION;
use crate::build::plan::{ArtifactNode, PlanInput};
use crate::model::{Package, PackageFormat, Pipeline};
use crate::records::Input;
use crate::store::digest;
use crate::{Error, Result};

/// The package format of a package kind.
pub(super) fn format_of(kind: ArtifactKind) -> PackageFormat {
    match kind {
        ArtifactKind::Deb => PackageFormat::Deb,
        ArtifactKind::Rpm => PackageFormat::Rpm,
        ArtifactKind::OciImage => unreachable!("images are not packages"),
        ArtifactKind::MachineImage => unreachable!("a machine image is not a package kind"),
    }
}

/// The file name a package gets in `format`: the one source of package
/// artifact names.
pub(crate) fn artifact_name(pkg: &Package, version: &str, format: PackageFormat) -> String {
    match format {
        PackageFormat::Deb => format!("{}_{}_{}.deb", pkg.name, version, pkg.arch.deb()),
        PackageFormat::Rpm => format!("{}-{}-1.{}.rpm", pkg.name, version, pkg.arch.rpm()),
    }
}

/// One node per package that lists `kind`'s format.
pub(super) fn nodes(p: &Pipeline, kind: ArtifactKind) -> Vec<ArtifactNode> {
    let format = format_of(kind);
    p.packages
        .values()
        .filter(|pkg| pkg.formats.contains(&format))
        .map(|pkg| {
            let mut after: Vec<String> = pkg
                .files
                .iter()
                .filter_map(|f| f.from_step.clone())
                .collect();
            after.sort();
            after.dedup();
            ArtifactNode {
                id: format!("{kind} {}", pkg.name),
                kind,
                component: super::package_component(&pkg.name),
                inputs: plan_inputs(p, &pkg.name),
                after_steps: after,
                outputs: vec![artifact_name(pkg, &p.project.version, format)],
                cache_key: None,
            }
        })
        .collect()
}

/// The declared inputs of package `name`.
fn plan_inputs(p: &Pipeline, name: &str) -> Vec<PlanInput> {
    let Some(pkg) = p.packages.get(name) else {
        return Vec::new();
    };
    let mut out: Vec<PlanInput> = pkg
        .files
        .iter()
        .map(|f| PlanInput::File {
            src: f.src.clone(),
            dst: f.dst.clone(),
        })
        .collect();
    for (which, path) in scripts(pkg) {
        out.push(PlanInput::Script {
            which: which.to_string(),
            path: path.to_string(),
        });
    }
    for (which, path) in doc_files(pkg) {
        out.push(PlanInput::Doc {
            which: which.to_string(),
            path: path.to_string(),
        });
    }
    out
}

/// The documentation files of `pkg` (`license_file`, `changelog`).
fn doc_files(pkg: &Package) -> Vec<(&'static str, &str)> {
    let d = &pkg.docs;
    [
        ("license_file", &d.license_file),
        ("changelog", &d.changelog),
    ]
    .into_iter()
    .filter_map(|(n, p)| Some((n, p.as_deref()?)))
    .collect()
}

/// Changes when the package stages start writing other contents for the
/// same inputs (the copyright file, the changelog, rpm directory
/// ownership), so no cached package of the earlier kind is reused by a pipe
/// of the same version built from other sources.
const CONTENTS: &str = "docs-1";

/// The copyright file and changelog `pkg` carries (see
/// [`crate::model::PackageDocs`]).
pub(super) fn docs(p: &Pipeline, cx: &StageContext, pkg: &Package) -> Result<stages::docs::Docs> {
    let read = |rel: &str| -> Result<String> {
        let path = cx.dir.join(rel);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        String::from_utf8(bytes).map_err(|_| Error::Usage {
            message: format!("`{rel}` is not UTF-8 text"),
            hint: Some("package metadata is text: convert the file to UTF-8".into()),
        })
    };
    let version = &p.project.version;
    // The maintainer, or the package when an rpm-only package names none.
    let author = pkg.maintainer.clone().unwrap_or_else(|| pkg.name.clone());
    let holder = pkg.docs.copyright.clone().unwrap_or_else(|| {
        let who = author.split('<').next().unwrap_or(&author).trim();
        format!("{} {who}", stages::docs::year(cx.epoch))
    });
    let copyright = stages::docs::Copyright {
        name: pkg.name.clone(),
        contact: pkg.maintainer.clone(),
        source: pkg.homepage.clone(),
        holder,
        license: pkg.license.clone(),
        text: pkg.docs.license_file.as_deref().map(read).transpose()?,
    }
    .render();
    let changelog = match &pkg.docs.changelog {
        Some(rel) => {
            let text = read(rel)?;
            stages::docs::Changelog::parse(&pkg.name, version, &author, &text).map_err(|e| {
                Error::Usage {
                    message: format!("changelog `{rel}`: {e}"),
                    hint: Some("run `pipe validate` for the details".into()),
                }
            })?
        }
        None => stages::docs::Changelog::generated(&pkg.name, version, &author, cx.epoch),
    };
    Ok(stages::docs::Docs {
        copyright,
        changelog,
    })
}

/// The package a node is about.
pub(super) fn package<'a>(p: &'a Pipeline, node: &ArtifactNode) -> Result<&'a Package> {
    let name = node.component.name();
    p.packages.get(name).ok_or_else(|| Error::Usage {
        message: format!("the plan names package `{name}`, which pipeline.toml does not declare"),
        hint: Some("make the plan again from this pipeline.toml".into()),
    })
}

/// Resolves the file tree of `pkg` and computes the key for `kind`.
pub(super) fn prepare(
    p: &Pipeline,
    cx: &StageContext,
    pkg: &Package,
    kind: ArtifactKind,
) -> Result<Prepared> {
    let format = format_of(kind);
    let mappings: Vec<stages::tree::Mapping> = pkg
        .files
        .iter()
        .map(|f| stages::tree::Mapping {
            src: PathBuf::from(&f.src),
            dst: f.dst.clone(),
            mode: f.mode,
            config: f.config,
        })
        .collect();
    let entries = stages::tree::resolve(&cx.dir, &mappings, cx.epoch)?;
    let project = std::fs::canonicalize(&cx.dir).map_err(|e| Error::io(&cx.dir, e))?;

    let mut key = crate::build::key::KeyBuilder::new();
    key.field("tool", TOOL_VERSION.as_bytes());
    key.field("contents", CONTENTS.as_bytes());
    key.field("format", format!("{format:?}").as_bytes());
    key.field("version", p.project.version.as_bytes());
    key.field("epoch", cx.epoch.to_string().as_bytes());
    key.field("section", &crate::json::to_vec(pkg));
    let mut inputs = Vec::new();
    for e in &entries {
        let content = match &e.kind {
            stages::tree::EntryKind::Dir => "dir".to_string(),
            stages::tree::EntryKind::Symlink { target } => format!("symlink:{target}"),
            stages::tree::EntryKind::File { src, .. } => {
                // Both digests now: the key needs blake3, the manifest
                // both, and the file is read once for the two.
                let blob = digest::hash_file_blocking(src)?;
                let content = format!("file:{}", blob.blake3);
                inputs.push(Input {
                    path: relative(&project, src),
                    blob,
                });
                content
            }
        };
        key.field(
            "entry",
            format!("{}\0{:o}\0{}\0{content}", e.path, e.mode, e.config).as_bytes(),
        );
    }
    // The documentation files are inputs like the scripts.
    for (which, file) in doc_files(pkg) {
        let blob = digest::hash_file_blocking(&cx.dir.join(file))?;
        key.field("doc", format!("{which}\0{}", blob.blake3).as_bytes());
        inputs.push(Input {
            path: file.to_string(),
            blob,
        });
    }
    for (which, script) in scripts(pkg) {
        let blob = digest::hash_file_blocking(&cx.dir.join(script))?;
        key.field("script", format!("{which}\0{}", blob.blake3).as_bytes());
        inputs.push(Input {
            path: script.to_string(),
            blob,
        });
    }
    if let (PackageFormat::Rpm, Some(signer)) = (format, &cx.signer) {
        key.field("signer", signer.fingerprint().as_bytes());
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    inputs.dedup_by(|a, b| a.path == b.path);
    Ok(Prepared {
        key: key.finish(),
        inputs,
        work: Box::new(entries),
        outputs: None,
    })
}

/// The tree [`prepare`] resolved.
#[allow(
    clippy::expect_used,
    reason = "`prepare` of a package kind made the work"
)]
pub(super) fn entries(prepared: Prepared) -> Vec<stages::tree::Entry> {
    *prepared
        .work
        .downcast::<Vec<stages::tree::Entry>>()
        .expect("a package node's work is its file tree")
}

fn scripts(pkg: &Package) -> Vec<(&'static str, &str)> {
    let s = &pkg.scripts;
    [
        ("preinst", &s.preinst),
        ("postinst", &s.postinst),
        ("prerm", &s.prerm),
        ("postrm", &s.postrm),
    ]
    .into_iter()
    .filter_map(|(n, p)| Some((n, p.as_deref()?)))
    .collect()
}

/// The relationship fields in the stages' terms (Debian syntax; the rpm
/// stage maps them onto rpm's tags).
pub(super) fn relations(pkg: &Package) -> stages::deb::Relations {
    let r = &pkg.relations;
    stages::deb::Relations {
        pre_depends: r.pre_depends.clone(),
        depends: r.depends.clone(),
        recommends: r.recommends.clone(),
        suggests: r.suggests.clone(),
        breaks: r.breaks.clone(),
        conflicts: r.conflicts.clone(),
        provides: r.provides.clone(),
        replaces: r.replaces.clone(),
    }
}

/// The maintainer scripts as absolute paths.
pub(super) fn stage_scripts(dir: &Path, pkg: &Package) -> stages::deb::Scripts {
    let s = &pkg.scripts;
    let path = |s: &Option<String>| s.as_ref().map(|p| dir.join(p));
    stages::deb::Scripts {
        preinst: path(&s.preinst),
        postinst: path(&s.postinst),
        prerm: path(&s.prerm),
        postrm: path(&s.postrm),
    }
}

fn relative(project: &Path, path: &Path) -> String {
    path.strip_prefix(project)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
