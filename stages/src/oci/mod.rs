//! The OCI image stage: an image made of a base (nothing, an OCI image
//! layout tarball or a `docker save` tarball) plus one layer per package,
//! written as content-addressed blobs and then as an image-layout tarball.
//!
//! What the stage writes, and why it is deterministic:
//!
//! - **Layers.** Each package's file tree ([`crate::tree`], the same entries
//!   the .deb holds, with the same modes, root owners and the
//!   `SOURCE_DATE_EPOCH` date) becomes a tar stream with relative names,
//!   compressed with gzip (no name, mtime 0 in the gzip header; level 6) or,
//!   on request, zstd (multithreaded with a fixed job layout, so the thread
//!   count does not show). The uncompressed stream's sha256 is the layer's
//!   `diff_id`, the compressed bytes' sha256 its digest; both are computed in
//!   the one pass that writes the file, so memory does not grow with a
//!   layer.
//! - **Base layers** are copied from the base tarball unchanged (their
//!   digests are checked on the way) and come first.
//! - **Configuration, manifest.** Built with `oci-spec`'s types and written
//!   as canonical JSON (every object's keys sorted; see `json`), so a
//!   label map's iteration order never reaches a digest. `created` and every
//!   history entry are `SOURCE_DATE_EPOCH`.
//! - **Layout tarball** ([`write_layout`]): `oci-layout`, `index.json`
//!   (one manifest, named by the `org.opencontainers.image.ref.name`
//!   annotation), `manifest.json` (what `docker load` reads: configuration
//!   and layer paths, the repository tag) and `blobs/sha256/<hex>`, in a
//!   fixed order with fixed tar headers. It is a function of the blobs and
//!   the reference name only, so it can be written again byte for byte from
//!   the blobs wherever they are kept.

mod base;
mod json;
mod layer;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder, ImageConfiguration,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

pub use self::base::MAX_JSON;
use self::layer::HashingWriter;
use crate::tarball::{TarEntry, TarKind, TarWriter};
use crate::tree::Entry;
use crate::{Error, Result};

/// Media type of an OCI image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image configuration.
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer.
pub(crate) const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed layer.
pub(crate) const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed layer.
pub(crate) const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// How the package layers are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LayerCompression {
    /// gzip: what every OCI client reads.
    #[default]
    Gzip,
    /// zstd: smaller and faster; needs a recent client (containerd 1.5,
    /// podman 3.1, docker 23).
    Zstd,
}

impl LayerCompression {
    /// The name in `pipeline.toml` (`gzip`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            LayerCompression::Gzip => "gzip",
            LayerCompression::Zstd => "zstd",
        }
    }
}

/// What an image starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// Nothing: the image holds only the package layers.
    Scratch,
    /// An OCI image-layout tarball, as `skopeo copy … oci-archive:FILE`
    /// writes it.
    OciArchive(PathBuf),
    /// A tarball as `docker save` writes it.
    DockerArchive(PathBuf),
}

/// The runtime configuration of the image. Empty fields inherit the base's.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// Environment variables, added to (and overriding) the base's.
    pub env: BTreeMap<String, String>,
    /// Exposed TCP ports, added to the base's.
    pub expose: Vec<u16>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// Labels, added to (and overriding) the base's.
    pub labels: BTreeMap<String, String>,
}

/// One package layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The package it holds (recorded in the image's history).
    pub package: String,
    /// Its files, as [`crate::tree::resolve`] returns them.
    pub entries: Vec<Entry>,
}

/// An image to build.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// What it starts from.
    pub base: Base,
    /// One layer per package, in order.
    pub layers: Vec<Layer>,
    /// Runtime configuration.
    pub config: ImageConfig,
    /// `SOURCE_DATE_EPOCH`: `created`, history dates and every file's date.
    pub created: u64,
    /// Compression of the package layers.
    pub compression: LayerCompression,
    /// GOARCH of a scratch image (`amd64`); an image with a base takes the
    /// base's.
    pub architecture: String,
}

/// A blob: what an OCI descriptor says of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlobRef {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

impl BlobRef {
    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// What the base was, for the provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseInfo {
    /// The digest that names the base image: its manifest's (OCI layout) or
    /// its configuration's (`docker save`, docker's image ID).
    pub digest: String,
    /// How many layers it gave.
    pub layers: usize,
}

/// A built image: its blobs are files `<dir>/<hex>`.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// Where the blobs are.
    pub dir: PathBuf,
    /// The image manifest; its digest names the image.
    pub manifest: BlobRef,
    /// The configuration.
    pub config: BlobRef,
    /// Every layer, the base's first.
    pub layers: Vec<BlobRef>,
    /// The base, unless it was `scratch`.
    pub base: Option<BaseInfo>,
}

impl BuiltImage {
    /// The path of a blob.
    pub fn path(&self, blob: &BlobRef) -> PathBuf {
        self.dir.join(blob.hex())
    }
}

/// `sha256:<hex>` of a finished hash.
pub(crate) fn sha256_string(out: impl AsRef<[u8]>) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in out.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_of(bytes: &[u8]) -> String {
    sha256_string(Sha256::digest(bytes))
}

/// Reads the base (index, manifest and configuration only; layers are
/// checked when [`build_image`] copies them): what it is named by and how
/// many layers it gives. `None` for `scratch`. A base that is not an image
/// is an error.
pub fn inspect_base(base: &Base, architecture: &str) -> Result<Option<BaseInfo>> {
    let b = match base {
        Base::Scratch => return Ok(None),
        Base::OciArchive(p) => base::read_base(p, base::ArchiveKind::Oci, architecture)?,
        Base::DockerArchive(p) => base::read_base(p, base::ArchiveKind::Docker, architecture)?,
    };
    Ok(Some(BaseInfo {
        digest: b.digest,
        layers: b.layers.len(),
    }))
}

/// Builds `spec` into blobs in `dir` (created if missing), one file per blob
/// named by its hex digest. Files appear only complete (temporary file,
/// then rename); a blob already there is kept.
pub fn build_image(spec: &ImageSpec, dir: &Path) -> Result<BuiltImage> {
    fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let created = keys::Timestamp::from_unix(spec.created).to_string();
    let base = match &spec.base {
        Base::Scratch => None,
        Base::OciArchive(p) => Some(base::read_base(
            p,
            base::ArchiveKind::Oci,
            &spec.architecture,
        )?),
        Base::DockerArchive(p) => Some(base::read_base(
            p,
            base::ArchiveKind::Docker,
            &spec.architecture,
        )?),
    };

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    if let Some(b) = &base {
        for l in &b.layers {
            let blob = write_blob_file(dir, |f, _| base::copy_layer(b, l, f))?;
            layers.push(blob);
            diff_ids.push(l.diff_id.clone());
        }
        history.extend(b.config.history().clone().unwrap_or_default());
    }
    for l in &spec.layers {
        let mut diff_id = String::new();
        let blob = write_blob_file(dir, |f, name| {
            let w = layer::write_layer(&l.entries, spec.created, spec.compression, f, name)?;
            diff_id = w.diff_id;
            Ok(w.blob)
        })?;
        layers.push(blob);
        diff_ids.push(diff_id);
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("pipe: package {}", l.package))
                .build()
                .map_err(|e| Error::write("image history", io::Error::other(e)))?,
        );
    }

    let config_json = image_config(spec, base.as_ref(), &created, diff_ids, history)?;
    let config = write_blob_bytes(dir, MEDIA_CONFIG, &config_json)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(&config)?)
        .layers(layers.iter().map(descriptor).collect::<Result<Vec<_>>>()?)
        .build()
        .map_err(|e| Error::write(dir, io::Error::other(e)))?;
    let manifest = write_blob_bytes(dir, MEDIA_MANIFEST, &json::to_vec(&manifest))?;
    tracing::debug!(manifest = %manifest.digest, layers = layers.len(), "built image");
    Ok(BuiltImage {
        dir: dir.to_path_buf(),
        manifest,
        config,
        layers,
        base: base.map(|b| BaseInfo {
            digest: b.digest,
            layers: b.layers.len(),
        }),
    })
}

fn image_config(
    spec: &ImageSpec,
    base: Option<&base::BaseImage>,
    created: &str,
    diff_ids: Vec<String>,
    history: Vec<oci_spec::image::History>,
) -> Result<Vec<u8>> {
    let c = &spec.config;
    let inherited = base.and_then(|b| b.config.config().clone());
    let mut env: Vec<String> = Vec::new();
    let mut ports: Vec<String> = Vec::new();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut cfg = ConfigBuilder::default();
    if let Some(i) = &inherited {
        env = i.env().clone().unwrap_or_default();
        ports = i.exposed_ports().clone().unwrap_or_default();
        labels.extend(i.labels().clone().unwrap_or_default());
        if let Some(v) = i.entrypoint() {
            cfg = cfg.entrypoint(v.clone());
        }
        if let Some(v) = i.cmd() {
            cfg = cfg.cmd(v.clone());
        }
        if let Some(v) = i.working_dir() {
            cfg = cfg.working_dir(v.clone());
        }
        if let Some(v) = i.user() {
            cfg = cfg.user(v.clone());
        }
        if let Some(v) = i.volumes() {
            cfg = cfg.volumes(v.clone());
        }
        if let Some(v) = i.stop_signal() {
            cfg = cfg.stop_signal(v.clone());
        }
    }
    for (k, v) in &c.env {
        let prefix = format!("{k}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{k}={v}"));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    for p in &c.expose {
        let p = format!("{p}/tcp");
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports.sort();
    labels.extend(c.labels.clone());
    if !c.entrypoint.is_empty() {
        cfg = cfg.entrypoint(c.entrypoint.clone());
        // Docker's rule: a new entrypoint drops the inherited command.
        if c.cmd.is_empty() {
            cfg = cfg.cmd(Vec::<String>::new());
        }
    }
    if !c.cmd.is_empty() {
        cfg = cfg.cmd(c.cmd.clone());
    }
    if let Some(w) = &c.working_dir {
        cfg = cfg.working_dir(w.clone());
    }
    if let Some(u) = &c.user {
        cfg = cfg.user(u.clone());
    }
    cfg = cfg.env(env);
    if !ports.is_empty() {
        cfg = cfg.exposed_ports(ports);
    }
    if !labels.is_empty() {
        cfg = cfg.labels(
            labels
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let bad = |e: oci_spec::OciSpecError| Error::write("image configuration", io::Error::other(e));
    let (arch, os) = match base {
        Some(b) => (b.config.architecture().clone(), b.config.os().clone()),
        None => (Arch::from(spec.architecture.as_str()), Os::Linux),
    };
    let config: ImageConfiguration = oci_spec::image::ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(arch)
        .os(os)
        .config(cfg.build().map_err(bad)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(bad)?,
        )
        .history(history)
        .build()
        .map_err(bad)?;
    Ok(json::to_vec(&config))
}

fn descriptor(b: &BlobRef) -> Result<Descriptor> {
    let digest: Digest = b
        .digest
        .parse()
        .map_err(|e| Error::write(&b.digest, io::Error::other(e)))?;
    DescriptorBuilder::default()
        .media_type(MediaType::from(b.media_type.as_str()))
        .digest(digest)
        .size(b.size)
        .build()
        .map_err(|e| Error::write(&b.digest, io::Error::other(e)))
}

/// Writes a blob through `write` into a temporary file in `dir`, then
/// renames it to its digest.
fn write_blob_file(
    dir: &Path,
    write: impl FnOnce(&mut File, &Path) -> Result<BlobRef>,
) -> Result<BlobRef> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".blob-")
        .tempfile_in(dir)
        .map_err(|e| Error::write(dir, e))?;
    let name = tmp.path().to_path_buf();
    let blob = write(tmp.as_file_mut(), &name)?;
    let dst = dir.join(blob.hex());
    tmp.persist(&dst).map_err(|e| Error::write(&dst, e.error))?;
    Ok(blob)
}

fn write_blob_bytes(dir: &Path, media_type: &str, bytes: &[u8]) -> Result<BlobRef> {
    write_blob_file(dir, |f, name| {
        f.write_all(bytes).map_err(|e| Error::write(name, e))?;
        Ok(BlobRef {
            media_type: media_type.to_string(),
            digest: sha256_of(bytes),
            size: bytes.len() as u64,
        })
    })
}

/// The blobs of an image, as its manifest names them; with the manifest
/// itself, what [`write_layout`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBlobs {
    /// The manifest.
    pub manifest: BlobRef,
    /// Its configuration.
    pub config: BlobRef,
    /// Its layers, in order.
    pub layers: Vec<BlobRef>,
}

impl ImageBlobs {
    /// Reads the descriptors of a manifest (whose own digest and size are
    /// computed from `bytes`).
    pub fn from_manifest(bytes: &[u8]) -> std::result::Result<ImageBlobs, String> {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
        let blob = |d: &Descriptor| BlobRef {
            media_type: d.media_type().to_string(),
            digest: d.digest().to_string(),
            size: d.size(),
        };
        Ok(ImageBlobs {
            manifest: BlobRef {
                media_type: MEDIA_MANIFEST.into(),
                digest: sha256_of(bytes),
                size: bytes.len() as u64,
            },
            config: blob(m.config()),
            layers: m.layers().iter().map(blob).collect(),
        })
    }
}

impl From<&BuiltImage> for ImageBlobs {
    fn from(b: &BuiltImage) -> Self {
        ImageBlobs {
            manifest: b.manifest.clone(),
            config: b.config.clone(),
            layers: b.layers.clone(),
        }
    }
}

/// Writes the image-layout tarball of `image` to `out` (atomically),
/// reading each blob through `open`. `name` is the repository (`hello`) and
/// `tag` the reference (`1.2.0`): `index.json` names the manifest `tag`,
/// `manifest.json` (for `docker load`) `name:tag`. Every blob is checked
/// against its digest as it is copied.
pub fn write_layout(
    out: &Path,
    image: &ImageBlobs,
    name: &str,
    tag: &str,
    mut open: impl FnMut(&BlobRef) -> io::Result<Box<dyn Read>>,
) -> Result<u64> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let wr = |e| Error::write(out, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".layout-")
        .tempfile_in(dir)
        .map_err(wr)?;
    let mut blobs: BTreeMap<&str, &BlobRef> = BTreeMap::new();
    for b in image.layers.iter().chain([&image.config, &image.manifest]) {
        blobs.insert(b.hex(), b);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![{
            let mut d = descriptor(&image.manifest)?;
            d.set_annotations(Some(
                [
                    (
                        "io.containerd.image.name".to_string(),
                        format!("{name}:{tag}"),
                    ),
                    (
                        "org.opencontainers.image.ref.name".to_string(),
                        tag.to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
            ));
            d
        }])
        .build()
        .map_err(|e| wr(io::Error::other(e)))?;
    let docker = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", image.config.hex()),
        "RepoTags": [format!("{name}:{tag}")],
        "Layers": image.layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect::<Vec<_>>(),
    }]);
    let total = {
        let mut tar = TarWriter::new(HashingWriter::new(BufWriter::with_capacity(
            1 << 20,
            tmp.as_file_mut(),
        )));
        let mut buf = vec![0u8; 256 << 10];
        for d in ["blobs/", "blobs/sha256/"] {
            tar.header(&TarEntry {
                name: d,
                kind: TarKind::Dir,
                mode: 0o755,
                mtime: 0,
            })
            .map_err(wr)?;
        }
        for b in blobs.values() {
            let member = format!("blobs/sha256/{}", b.hex());
            tar.header(&TarEntry {
                name: &member,
                kind: TarKind::File { size: b.size },
                mode: 0o644,
                mtime: 0,
            })
            .map_err(wr)?;
            let mut r = HashingReader {
                inner: open(b).map_err(wr)?,
                sha: Sha256::new(),
            };
            let copied = tar.data(&mut r, b.size, &mut buf).map_err(wr)?;
            let found = sha256_string(r.sha.finalize());
            if copied != b.size || found != b.digest {
                return Err(Error::BlobMismatch {
                    path: out.to_path_buf(),
                    name: member,
                    expected: format!("{} ({} bytes)", b.digest, b.size),
                    found: format!("{found} ({copied} bytes)"),
                });
            }
            tar.pad(b.size).map_err(wr)?;
        }
        tar.file("index.json", 0o644, 0, &json::to_vec(&index))
            .map_err(wr)?;
        tar.file("manifest.json", 0o644, 0, &json::to_vec(&docker))
            .map_err(wr)?;
        tar.file("oci-layout", 0o644, 0, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(wr)?;
        let (_, total, mut w) = tar.finish().map_err(wr)?.finish();
        w.flush().map_err(wr)?;
        total
    };
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(wr)?;
    }
    tmp.as_file().sync_all().map_err(wr)?;
    tmp.persist(out).map_err(|e| wr(e.error))?;
    Ok(total)
}

/// Hashes what is read through it.
struct HashingReader {
    inner: Box<dyn Read>,
    sha: Sha256,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(crate::io::handled(buf, n)?);
        Ok(n)
    }
}

/// The manifest of an OCI artifact (an image manifest with `artifactType`,
/// the empty configuration and one layer, the payload) attached to
/// `subject` (the image-spec 1.1 way to attach signatures and provenance).
pub fn artifact_manifest(
    artifact_type: &str,
    empty_config: &BlobRef,
    payloads: &[BlobRef],
    subject: &BlobRef,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let d = |b: &BlobRef| serde_json::json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size});
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "artifactType": artifact_type,
        "config": d(empty_config),
        "layers": payloads.iter().map(d).collect::<Vec<_>>(),
        "subject": d(subject),
    });
    if !annotations.is_empty()
        && let Some(m) = m.as_object_mut()
    {
        m.insert("annotations".into(), serde_json::json!(annotations));
    }
    json::to_vec(&m)
}

/// One entry of a referrers index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    /// The artifact manifest's digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its `artifactType`.
    pub artifact_type: String,
    /// Its annotations (copied into the index, as the spec asks).
    pub annotations: BTreeMap<String, String>,
}

/// The referrers index (tag schema `sha256-<hex>`) with `entry` added to
/// `existing`; `None` when `existing` lists it already. Entries of other
/// artifacts are kept as they are.
pub fn referrers_index(
    existing: Option<&[u8]>,
    entry: &Referrer,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut manifests: Vec<serde_json::Value> = match existing {
        None => Vec::new(),
        Some(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| format!("the referrers index is not JSON: {e}"))?;
            v.get("manifests")
                .and_then(|m| m.as_array())
                .cloned()
                .ok_or("the referrers index lists no `manifests`")?
        }
    };
    if manifests
        .iter()
        .any(|m| m.get("digest").and_then(|d| d.as_str()) == Some(entry.digest.as_str()))
    {
        return Ok(None);
    }
    let mut d = serde_json::json!({
        "mediaType": MEDIA_MANIFEST,
        "digest": entry.digest,
        "size": entry.size,
        "artifactType": entry.artifact_type,
    });
    if !entry.annotations.is_empty()
        && let Some(d) = d.as_object_mut()
    {
        d.insert("annotations".into(), serde_json::json!(entry.annotations));
    }
    manifests.push(d);
    Ok(Some(json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": manifests,
    }))))
}
