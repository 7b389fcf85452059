//! Reading a base image from a tarball: an OCI image layout
//! (`skopeo copy … oci-archive:FILE`) or a `docker save` archive
//! (`manifest.json` naming a configuration and layer files; docker 25 and
//! later write both forms in one tarball).
//!
//! The tarball is indexed once (name → offset and size of each member) and
//! members are read by seeking, so a base of any size costs one pass to
//! index and one pass to copy its layers. JSON members are capped at
//! [`MAX_JSON`]; every blob is checked against its digest while it is
//! copied, and a base that is not an image is refused with what is wrong.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::layer::HashingWriter;
use super::{BlobRef, MEDIA_LAYER, MEDIA_LAYER_GZIP, MEDIA_LAYER_ZSTD};
use crate::{Error, Result};

/// Largest JSON member (index, manifest, configuration) read from a base.
pub const MAX_JSON: u64 = 4 << 20;
/// Most members a base tarball may have.
const MAX_MEMBERS: usize = 1 << 20;

/// Which kind of tarball a base is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Oci,
    Docker,
}

/// A layer of the base, where it is in the tarball.
#[derive(Clone, Debug)]
pub(crate) struct BaseLayer {
    pub(crate) member: String,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) media_type: String,
    /// Known from the OCI manifest; for a `docker save` layer, learnt while
    /// copying it.
    pub(crate) digest: Option<String>,
    pub(crate) diff_id: String,
}

/// A base image read from a tarball.
#[derive(Debug)]
pub(crate) struct BaseImage {
    pub(crate) path: PathBuf,
    pub(crate) config: ImageConfiguration,
    pub(crate) layers: Vec<BaseLayer>,
    /// The digest that names the base: its manifest's for an OCI layout, its
    /// configuration's (docker's image ID) for a `docker save` archive.
    pub(crate) digest: String,
}

struct Member {
    offset: u64,
    size: u64,
}

struct Archive {
    path: PathBuf,
    file: File,
    members: BTreeMap<String, Member>,
}

impl Archive {
    fn open(path: &Path) -> Result<Archive> {
        let bad = |reason: String| Error::BadBaseImage {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| Error::read(path, e))?;
        let mut members = BTreeMap::new();
        {
            let mut ar = tar::Archive::new(BufReader::new(&file));
            let entries = ar
                .entries_with_seek()
                .map_err(|e| bad(format!("not a tar archive ({e})")))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad(format!("not a tar archive ({e})")))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let name = name.trim_start_matches("./").to_string();
                members.insert(
                    name,
                    Member {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                );
                if members.len() > MAX_MEMBERS {
                    return Err(bad(format!("more than {MAX_MEMBERS} members")));
                }
            }
        }
        if members.is_empty() {
            return Err(bad("not a tar archive, or an empty one".into()));
        }
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadBaseImage {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn member(&self, name: &str) -> Result<&Member> {
        self.members
            .get(name.trim_start_matches("./"))
            .ok_or_else(|| self.bad(format!("`{name}` is missing")))
    }

    /// Reads a small member whole, capped at [`MAX_JSON`].
    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let m = self.member(name)?;
        if m.size > MAX_JSON {
            return Err(self.bad(format!(
                "`{name}` is {} bytes, more than the {MAX_JSON} a manifest or configuration may have",
                m.size
            )));
        }
        let mut buf = vec![0u8; m.size as usize];
        let mut f = &self.file;
        f.seek(SeekFrom::Start(m.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| Error::read(&self.path, e))?;
        Ok(buf)
    }

    /// Reads a small blob by digest and checks it.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let name = blob_member(digest).ok_or_else(|| self.bad(format!("bad digest `{digest}`")))?;
        let bytes = self.read_small(&name)?;
        let found = super::sha256_of(&bytes);
        if found != digest {
            return Err(Error::BlobMismatch {
                path: self.path.clone(),
                name,
                expected: digest.to_string(),
                found,
            });
        }
        Ok(bytes)
    }
}

/// `blobs/sha256/<hex>` for `sha256:<hex>`, if the digest is well formed.
fn blob_member(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("blobs/sha256/{hex}"))
}

/// Reads the base at `path`.
pub(crate) fn read_base(path: &Path, kind: ArchiveKind, arch: &str) -> Result<BaseImage> {
    let ar = Archive::open(path)?;
    match kind {
        ArchiveKind::Oci => read_oci(ar, arch),
        ArchiveKind::Docker => read_docker(ar),
    }
}

fn json<T: serde::de::DeserializeOwned>(ar: &Archive, what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ar.bad(format!("{what} is not valid: {e}")))
}

fn read_oci(ar: Archive, arch: &str) -> Result<BaseImage> {
    if !ar.members.contains_key("oci-layout") {
        return Err(ar.bad(
            "no `oci-layout` file: not an OCI image layout (a `docker save` tarball is `docker-archive:FILE`)",
        ));
    }
    let mut index: ImageIndex = json(&ar, "`index.json`", &ar.read_small("index.json")?)?;
    // An index may point at another index (a multi-platform image): follow
    // at most a few levels to an image manifest.
    for _ in 0..4 {
        let manifests = index.manifests();
        let chosen = match manifests.as_slice() {
            [] => return Err(ar.bad("`index.json` lists no image")),
            [one] => one,
            many => many
                .iter()
                .find(|d| {
                    d.platform().as_ref().is_some_and(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == arch
                    })
                })
                .ok_or_else(|| {
                    ar.bad(format!(
                        "the index lists {} images and none is for linux/{arch}",
                        many.len()
                    ))
                })?,
        };
        let digest = chosen.digest().to_string();
        match chosen.media_type() {
            MediaType::ImageIndex => {
                index = json(&ar, "a nested index", &ar.read_blob(&digest)?)?;
            }
            MediaType::ImageManifest => return read_oci_manifest(ar, digest),
            MediaType::Other(t) if t == "application/vnd.docker.distribution.manifest.v2+json" => {
                return read_oci_manifest(ar, digest);
            }
            other => {
                return Err(ar.bad(format!(
                    "`index.json` names a `{other}`, not an image manifest"
                )));
            }
        }
    }
    Err(ar.bad("indexes nested more than 4 deep"))
}

fn read_oci_manifest(ar: Archive, digest: String) -> Result<BaseImage> {
    let manifest: ImageManifest = json(&ar, "the manifest", &ar.read_blob(&digest)?)?;
    let config_digest = manifest.config().digest().to_string();
    let config: ImageConfiguration =
        json(&ar, "the configuration", &ar.read_blob(&config_digest)?)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ar.bad(format!(
            "the manifest has {} layers but the configuration {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let digest = d.digest().to_string();
        let member =
            blob_member(&digest).ok_or_else(|| ar.bad(format!("bad digest `{digest}`")))?;
        let m = ar.member(&member)?;
        if m.size != d.size() {
            return Err(ar.bad(format!(
                "layer `{member}`: expected {} bytes, found {}",
                d.size(),
                m.size
            )));
        }
        layers.push(BaseLayer {
            offset: m.offset,
            size: m.size,
            member,
            media_type: layer_media_type(&ar, d.media_type().as_ref())?,
            digest: Some(digest),
            diff_id: diff_id.clone(),
        });
    }
    Ok(BaseImage {
        path: ar.path,
        config,
        layers,
        digest,
    })
}

/// The OCI media type for a base layer's (same bytes under docker's name).
fn layer_media_type(ar: &Archive, t: &str) -> Result<String> {
    Ok(match t {
        MEDIA_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => MEDIA_LAYER,
        MEDIA_LAYER_GZIP | "application/vnd.docker.image.rootfs.diff.tar.gzip" => MEDIA_LAYER_GZIP,
        MEDIA_LAYER_ZSTD | "application/vnd.docker.image.rootfs.diff.tar.zstd" => MEDIA_LAYER_ZSTD,
        other => return Err(ar.bad(format!("layer media type `{other}` is not supported"))),
    }
    .to_string())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    layers: Vec<String>,
}

fn read_docker(ar: Archive) -> Result<BaseImage> {
    let manifest: Vec<DockerManifest> = json(
        &ar,
        "`manifest.json`",
        &ar.read_small("manifest.json").map_err(|e| match e {
            Error::BadBaseImage { path, .. } => Error::BadBaseImage {
                path,
                reason: "no `manifest.json`: not a `docker save` archive (an OCI layout is `oci-archive:FILE`)".into(),
            },
            e => e,
        })?,
    )?;
    let image = match manifest.as_slice() {
        [one] => one,
        [] => return Err(ar.bad("`manifest.json` lists no image")),
        many => {
            return Err(ar.bad(format!(
                "`manifest.json` lists {} images; save only the base",
                many.len()
            )));
        }
    };
    let config_bytes = ar.read_small(&image.config)?;
    let digest = super::sha256_of(&config_bytes);
    let config: ImageConfiguration = json(&ar, "the configuration", &config_bytes)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != image.layers.len() {
        return Err(ar.bad(format!(
            "`manifest.json` has {} layers but the configuration {} diff_ids",
            image.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in image.layers.iter().zip(diff_ids) {
        let m = ar.member(name)?;
        let mut magic = [0u8; 4];
        let mut f = &ar.file;
        let n = f
            .seek(SeekFrom::Start(m.offset))
            .and_then(|_| f.take(4).read(&mut magic))
            .map_err(|e| Error::read(&ar.path, e))?;
        let media_type = match magic.get(..n) {
            Some([0x1f, 0x8b, ..]) => MEDIA_LAYER_GZIP,
            Some([0x28, 0xb5, 0x2f, 0xfd]) => MEDIA_LAYER_ZSTD,
            _ => MEDIA_LAYER,
        };
        layers.push(BaseLayer {
            member: name.trim_start_matches("./").to_string(),
            offset: m.offset,
            size: m.size,
            media_type: media_type.to_string(),
            digest: None,
            diff_id: diff_id.clone(),
        });
    }
    Ok(BaseImage {
        path: ar.path,
        config,
        layers,
        digest,
    })
}

/// Copies a base layer from the tarball into `out`, hashing it; returns its
/// blob. A digest that differs from the manifest's (or, for an uncompressed
/// layer, from its `diff_id`) is an error.
pub(crate) fn copy_layer(base: &BaseImage, layer: &BaseLayer, out: &mut File) -> Result<BlobRef> {
    let mut f = File::open(&base.path).map_err(|e| Error::read(&base.path, e))?;
    f.seek(SeekFrom::Start(layer.offset))
        .map_err(|e| Error::read(&base.path, e))?;
    let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, &mut *out));
    let copied =
        io::copy(&mut f.take(layer.size), &mut w).map_err(|e| Error::read(&base.path, e))?;
    let (digest, _, mut inner) = w.finish();
    inner.flush().map_err(|e| Error::read(&base.path, e))?;
    if copied != layer.size {
        return Err(Error::BadBaseImage {
            path: base.path.clone(),
            reason: format!(
                "layer `{}`: expected {} bytes, found {copied}",
                layer.member, layer.size
            ),
        });
    }
    let expected = match &layer.digest {
        Some(d) => Some(d.clone()),
        None if layer.media_type == MEDIA_LAYER => Some(layer.diff_id.clone()),
        None => None,
    };
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(Error::BlobMismatch {
            path: base.path.clone(),
            name: layer.member.clone(),
            expected,
            found: digest,
        });
    }
    check_diff_id(base, layer)?;
    Ok(BlobRef {
        media_type: layer.media_type.clone(),
        digest,
        size: layer.size,
    })
}

/// Checks that a compressed layer uncompresses to its `diff_id` (what the
/// configuration, and so the image ID, says the layer holds; `docker load`
/// refuses an image where they differ). An uncompressed layer's digest is
/// its `diff_id`, checked while it is copied.
fn check_diff_id(base: &BaseImage, layer: &BaseLayer) -> Result<()> {
    if layer.media_type == MEDIA_LAYER {
        return Ok(());
    }
    let read = |e| Error::read(&base.path, e);
    let mut f = File::open(&base.path).map_err(read)?;
    f.seek(SeekFrom::Start(layer.offset)).map_err(read)?;
    let compressed = BufReader::with_capacity(1 << 20, f.take(layer.size));
    let mut decoder: Box<dyn Read> = if layer.media_type == MEDIA_LAYER_ZSTD {
        Box::new(zstd::stream::read::Decoder::with_buffer(compressed).map_err(read)?)
    } else {
        Box::new(flate2::bufread::MultiGzDecoder::new(compressed))
    };
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut decoder, &mut w).map_err(|e| Error::BadBaseImage {
        path: base.path.clone(),
        reason: format!("layer `{}` does not uncompress: {e}", layer.member),
    })?;
    let (found, _, _) = w.finish();
    if found != layer.diff_id {
        return Err(Error::DiffIdMismatch {
            path: base.path.clone(),
            layer: layer.member.clone(),
            expected: layer.diff_id.clone(),
            found,
        });
    }
    Ok(())
}
