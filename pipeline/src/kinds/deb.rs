//! `.deb` artifacts: written by `stages::deb`, listed in the apt suite.

use std::path::Path;

use md5::{Digest, Md5};
use repo_index::apt;

use super::{Kind, Prepared, StageContext, Written, package};
use crate::artifact::{Artifact, ArtifactKind};
use crate::build::plan::ArtifactNode;
use crate::model::{Compression, Pipeline};
use crate::records::{Fragment, IndexedDeb};
use crate::store::layout;
use crate::{Error, Result};

/// The `.deb` kind.
pub(super) struct Deb;

impl Kind for Deb {
    fn kind(&self) -> ArtifactKind {
        ArtifactKind::Deb
    }

    fn nodes(&self, p: &Pipeline) -> Vec<ArtifactNode> {
        package::nodes(p, ArtifactKind::Deb)
    }

    fn prepare(&self, p: &Pipeline, cx: &StageContext, node: &ArtifactNode) -> Result<Prepared> {
        package::prepare(p, cx, package::package(p, node)?, ArtifactKind::Deb)
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
        let deb = stages::deb::DebPackage {
            name: pkg.name.clone(),
            version: stages::deb::version_from_project(&p.project.version)?,
            arch: pkg.arch.deb().to_string(),
            maintainer: pkg.maintainer.clone().unwrap_or_default(),
            summary: pkg.summary.clone(),
            description: pkg.description.clone(),
            relations: package::relations(pkg),
            section: pkg.section.clone().unwrap_or_else(|| "misc".into()),
            priority: pkg.priority.clone().unwrap_or_else(|| "optional".into()),
            homepage: pkg.homepage.clone(),
            entries: package::entries(prepared),
            scripts: package::stage_scripts(&cx.dir, pkg),
            docs: Some(package::docs(p, cx, pkg)?),
            mtime: cx.epoch,
        };
        let compression = match pkg.compression {
            Compression::Gzip => stages::deb::Compression::Gzip,
            Compression::Xz => stages::deb::Compression::Xz,
            Compression::Zstd => stages::deb::Compression::Zstd,
            Compression::None => stages::deb::Compression::None,
        };
        stages::deb::write_deb(
            &deb,
            &stages::deb::DebOptions {
                compression,
                ..Default::default()
            },
            &out_dir.join(node.single_output()?),
        )?;
        Ok(Written::default())
    }

    fn describe(&self, path: &Path, a: &Artifact, _file_time: u64) -> Result<Option<Fragment>> {
        Ok(Some(Fragment::Deb(IndexedDeb {
            artifact: a.name.clone(),
            sha256: a.blob.sha256.clone(),
            stanza: apt::render_stanza(&record_deb(path, a)?)?,
        })))
    }

    fn pool_key(&self, a: &Artifact) -> Option<String> {
        Some(pool_key(a))
    }

    fn deploy_arch(&self, a: &Artifact) -> Option<String> {
        // NAME_VERSION_ARCH.deb, as [`package::artifact_name`] writes it.
        Some(a.name.strip_suffix(".deb")?.rsplit('_').next()?.to_string())
    }
}

/// Where a package lives in the pool.
pub(super) fn pool_key(a: &Artifact) -> String {
    layout::pool(a.component.name(), &a.name)
}

fn record_deb(path: &Path, a: &Artifact) -> Result<apt::DebPackage> {
    let control = stages::deb::DebReader::open(path)?.control()?;
    // apt checks MD5sum too; it is the one digest the store does not keep.
    let mut md5 = Md5::new();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        let n = std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, 1 << 16), &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        md5.update(&buf);
    }
    Ok(apt::DebPackage {
        control,
        filename: pool_key(a),
        size: a.blob.size,
        md5: hex::encode(md5.finalize()),
        sha1: None,
        sha256: a.blob.sha256.clone(),
    })
}
