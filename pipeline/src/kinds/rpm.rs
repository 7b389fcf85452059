//! `.rpm` artifacts: written (and signed) by `stages::rpm`, listed in the
//! yum repository.

use std::path::Path;

use repo_index::yum;

use super::{Kind, Prepared, StageContext, Written, package};
use crate::artifact::{Artifact, ArtifactKind};
use crate::build::plan::ArtifactNode;
use crate::model::Pipeline;
use crate::records::{Fragment, IndexedRpm};
use crate::{Error, Result};

/// The `.rpm` kind.
pub(super) struct Rpm;

impl Kind for Rpm {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Rpm
    }

    fn nodes(&self, p: &Pipeline) -> Vec<ArtifactNode> {
        package::nodes(p, ArtifactKind::Rpm)
    }

    fn prepare(&self, p: &Pipeline, cx: &StageContext, node: &ArtifactNode) -> Result<Prepared> {
        package::prepare(p, cx, package::package(p, node)?, ArtifactKind::Rpm)
    }

    fn write(
        &self,
        p: &Pipeline,
        cx: &StageContext,
        node: &ArtifactNode,
        prepared: Prepared,
        out_dir: &Path,
    ) -> Result<Written> {
        let pkg = package::package(p, node)?;
        let rpm = stages::rpm::RpmPackage {
            name: pkg.name.clone(),
            version: p.project.version.clone(),
            arch: pkg.arch.rpm().to_string(),
            summary: pkg.summary.clone(),
            description: pkg.description.clone(),
            license: pkg.license.clone(),
            packager: pkg.maintainer.clone(),
            url: pkg.homepage.clone(),
            group: pkg.group.clone(),
            relations: package::relations(pkg),
            entries: package::entries(prepared),
            scripts: package::stage_scripts(&cx.dir, pkg),
            docs: Some(package::docs(p, cx, pkg)?),
            mtime: cx.epoch,
        };
        stages::rpm::write_rpm(
            &rpm,
            cx.signer.as_ref(),
            &out_dir.join(node.single_output()?),
        )?;
        Ok(Written::default())
    }

    fn describe(&self, path: &Path, a: &Artifact, file_time: u64) -> Result<Option<Fragment>> {
        Ok(Some(Fragment::Rpm(Box::new(IndexedRpm {
            artifact: a.name.clone(),
            sha256: a.blob.sha256.clone(),
            xml: yum::render_package(&record_rpm(path, a, file_time)?)?,
        }))))
    }

    fn pool_key(&self, a: &Artifact) -> Option<String> {
        Some(super::deb::pool_key(a))
    }

    fn signs(&self) -> bool {
        true
    }

    fn deploy_arch(&self, a: &Artifact) -> Option<String> {
        // NAME-VERSION-1.ARCH.rpm, as [`package::artifact_name`] writes it.
        Some(a.name.strip_suffix(".rpm")?.rsplit('.').next()?.to_string())
    }
}

fn record_rpm(path: &Path, a: &Artifact, file_time: u64) -> Result<yum::RpmPackage> {
    let bad = |e: rpm::Error| {
        Error::Stage(stages::Error::BadPackage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    // The headers' bounds first: the crate panics on an entry outside its
    // header's data (`stages::rpm::check_headers`).
    let refused = |reason: String| {
        Error::Stage(stages::Error::BadPackage {
            path: path.to_path_buf(),
            reason,
        })
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    stages::rpm::check_headers(&mut std::io::BufReader::new(file)).map_err(refused)?;
    let meta = rpm::PackageMetadata::open(path).map_err(bad)?;
    let text = |r: std::result::Result<&str, rpm::Error>| r.map(str::to_string).unwrap_or_default();
    let deps = |r: std::result::Result<Vec<rpm::Dependency>, rpm::Error>| {
        r.unwrap_or_default()
            .into_iter()
            .map(|d| yum::Dependency::new(d.name, d.flags.bits(), d.version))
            .collect::<Vec<_>>()
    };
    let h = &meta.header;
    let paths = meta.get_file_paths().map_err(bad)?;
    let modes = h
        .get_entry_data_as_u16_array(rpm::IndexTag::RPMTAG_FILEMODES)
        .unwrap_or_default();
    let flags = h
        .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_FILEFLAGS)
        .unwrap_or_default();
    let files = paths
        .iter()
        .enumerate()
        .map(|(i, p)| yum::RpmFile {
            path: p.to_string_lossy().into_owned(),
            kind: yum::FileKind::from_header(
                modes.get(i).copied().unwrap_or(0o100644).into(),
                flags.get(i).copied().unwrap_or(0),
            ),
        })
        .collect();
    let changelogs = meta
        .get_changelog_entries()
        .unwrap_or_default()
        .into_iter()
        .map(|c| yum::ChangelogEntry {
            author: c.name,
            date: c.timestamp,
            text: c.description,
        })
        .collect();
    let sig = &meta.signature;
    let archive_size = sig
        .get_entry_data_as_u64(rpm::IndexSignatureTag::RPMSIGTAG_LONGARCHIVESIZE)
        .or_else(|_| {
            sig.get_entry_data_as_u32(rpm::IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE)
                .map(u64::from)
        })
        .or_else(|_| h.get_entry_data_as_u64(rpm::IndexTag::RPMTAG_PAYLOADSIZE))
        .or_else(|_| {
            h.get_entry_data_as_u32(rpm::IndexTag::RPMTAG_PAYLOADSIZE)
                .map(u64::from)
        })
        .unwrap_or(0);
    let offsets = meta.get_package_segment_offsets();
    Ok(yum::RpmPackage {
        name: meta.get_name().map_err(bad)?.to_string(),
        epoch: meta.get_epoch().map_or(0, u64::from),
        version: meta.get_version().map_err(bad)?.to_string(),
        release: meta.get_release().map_err(bad)?.to_string(),
        arch: meta.get_arch().map_err(bad)?.to_string(),
        summary: text(meta.get_summary()),
        description: text(meta.get_description()),
        url: meta
            .get_url()
            .ok()
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        license: text(meta.get_license()),
        vendor: text(meta.get_vendor()),
        group: text(meta.get_group()),
        packager: text(meta.get_packager()),
        buildhost: text(meta.get_build_host()),
        sourcerpm: text(meta.get_source_rpm()),
        build_time: meta.get_build_time().unwrap_or(0),
        file_time,
        package_size: a.blob.size,
        installed_size: meta.get_installed_size().unwrap_or(0),
        archive_size,
        header_start: offsets.header,
        header_end: offsets.payload,
        sha256: a.blob.sha256.clone(),
        location_href: crate::store::layout::yum_package_href(&a.name),
        location_base: None,
        provides: deps(meta.get_provides()),
        requires: deps(meta.get_requires()),
        conflicts: deps(meta.get_conflicts()),
        obsoletes: deps(meta.get_obsoletes()),
        recommends: deps(meta.get_recommends()),
        suggests: deps(meta.get_suggests()),
        supplements: deps(meta.get_supplements()),
        enhances: deps(meta.get_enhances()),
        files,
        changelogs,
    })
}
