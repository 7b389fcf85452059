//! What pipe pushes to a registry, in terms of builds and environments:
//! a published build's images under the build id ([`publish_build`], run by
//! `pipe publish`), the environments' tags ([`move_tags`], the registry
//! view of a promotion), and all of it again from the store alone
//! ([`seed`], `pipe registry seed`, for a new or lost registry).
//!
//! Order, so that nothing is ever half-tagged and a rerun completes: blobs,
//! then the image manifest by digest, then the provenance artifact (whose
//! `subject` is that manifest) and the referrers index, and the build tag
//! last. The build tag is what [`publish_build`] and [`seed`] check (one
//! `HEAD` per image): when it is there, everything before it is too, so an
//! image published already costs that one request.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::Serialize;
use stages::oci::{BlobRef as OciBlob, ImageBlobs};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{BlobOutcome, BlobSource, MAX_MANIFEST, PushProgress, PushReport, Registry};
use crate::artifact::{Artifact, Component};
use crate::records::{IndexedImage, Manifest, files, history, index};
use crate::store::{Store, layout};
use crate::{Error, Result};

/// The `artifactType` of the provenance attached to an image.
pub(crate) const PROVENANCE_TYPE: &str = "application/vnd.in-toto+json";

/// One image pushed by [`publish_build`] or [`seed`].
#[derive(Debug, Clone, Serialize)]
pub struct ImagePublished {
    /// The image name.
    pub image: String,
    /// `HOST/NAMESPACE/NAME:TAG`.
    pub tag: String,
    /// `HOST/NAMESPACE/NAME@sha256:…`.
    pub reference: String,
    /// Blobs and bytes.
    pub report: PushReport,
    /// The provenance artifact's digest (`None`: the tag was there, nothing
    /// pushed).
    pub provenance: Option<String>,
}

/// An environment tag checked or moved.
#[derive(Debug, Clone, Serialize)]
pub struct TagMoved {
    /// The image name.
    pub image: String,
    /// `HOST/NAMESPACE/NAME:ENV`.
    pub tag: String,
    /// The digest it names now.
    pub digest: String,
    /// False when it named it already (one `HEAD`, nothing written).
    pub moved: bool,
}

/// What [`seed`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeedReport {
    /// Builds with images.
    pub builds: usize,
    /// Images pushed (their build tag was missing or wrong).
    pub pushed: Vec<ImagePublished>,
    /// Images whose build tag was right already.
    pub present: usize,
    /// Environment tags.
    pub tags: Vec<TagMoved>,
    /// Bytes uploaded, over every image.
    pub bytes_uploaded: u64,
    /// Bytes the registry had.
    pub bytes_skipped: u64,
}

/// The artifacts of image `name` in a build, by OCI digest.
fn parts(manifest: &Manifest, image: &str) -> BTreeMap<String, Artifact> {
    manifest
        .artifacts
        .iter()
        .filter(|a| a.component == Component::Image(image.to_string()))
        .map(|a| (format!("sha256:{}", a.blob.sha256), a.clone()))
        .collect()
}

/// Blobs of one image read from a build directory.
struct LocalSource {
    dir: PathBuf,
    parts: BTreeMap<String, Artifact>,
}

#[async_trait::async_trait]
impl BlobSource for LocalSource {
    async fn open(&self, blob: &OciBlob) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
        let a = self.parts.get(&blob.digest).ok_or_else(|| missing(blob))?;
        let p = self.dir.join(&a.name);
        let f = tokio::fs::File::open(&p)
            .await
            .map_err(|e| Error::io(&p, e))?;
        Ok(Box::pin(f))
    }
}

/// Blobs of one image read from the store (each read checked against its
/// digest by the store).
struct StoreSource<'a> {
    store: &'a Store,
    parts: BTreeMap<String, Artifact>,
}

#[async_trait::async_trait]
impl BlobSource for StoreSource<'_> {
    async fn open(&self, blob: &OciBlob) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
        let a = self.parts.get(&blob.digest).ok_or_else(|| missing(blob))?;
        Ok(Box::pin(self.store.get_blob(&a.blob).await?))
    }
}

fn missing(blob: &OciBlob) -> Error {
    Error::Verify {
        what: blob.digest.clone(),
        detail: "the image manifest names a blob that is not an artifact of the build".into(),
    }
}

/// Reads an image manifest blob (capped) and checks it against the digest
/// the signed build manifest gives.
async fn manifest_bytes(store: &Store, image: &IndexedImage) -> Result<Vec<u8>> {
    if image.blob.size > MAX_MANIFEST as u64 || image.blob.sha256 != image.sha256 {
        return Err(Error::Verify {
            what: image.artifact.clone(),
            detail: format!(
                "an image manifest of {} bytes with sha256 {} (the build manifest says {})",
                image.blob.size, image.blob.sha256, image.sha256
            ),
        });
    }
    let mut r = store.get_blob(&image.blob).await?;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::io(&image.artifact, e))?;
    Ok(bytes)
}

/// Pushes one image of `build` and its provenance, the build tag last.
/// Blobs in `uploaded_before` were uploaded by this process already
/// ([`push_build_blobs`]) and count as uploaded.
#[allow(clippy::too_many_arguments)]
async fn push_one(
    reg: &Registry,
    build: &str,
    image: &IndexedImage,
    manifest: &[u8],
    source: &dyn BlobSource,
    provenance: &[(Vec<u8>, &str)],
    created: &str,
    progress: &dyn PushProgress,
    uploaded_before: &HashSet<String>,
) -> Result<ImagePublished> {
    let blobs = ImageBlobs::from_manifest(manifest).map_err(|detail| Error::Verify {
        what: image.artifact.clone(),
        detail,
    })?;
    if blobs.manifest.hex() != image.sha256 {
        return Err(Error::Verify {
            what: image.artifact.clone(),
            detail: format!(
                "expected sha256 {}, found {}",
                image.sha256,
                blobs.manifest.hex()
            ),
        });
    }
    let digest = blobs.manifest.digest.clone();
    let mut report = PushReport {
        reference: reg.pinned(&image.image, &digest),
        ..Default::default()
    };
    for (b, o) in reg
        .push_blobs(&image.image, &blobs, source, &[], progress)
        .await?
    {
        report.count(
            b.size,
            o == BlobOutcome::Uploaded || uploaded_before.contains(&b.digest),
        );
    }
    reg.put_manifest(&image.image, &digest, manifest, stages::oci::MEDIA_MANIFEST)
        .await?;
    let payloads: Vec<(&[u8], &str)> = provenance.iter().map(|(b, t)| (&b[..], *t)).collect();
    let annotations = [(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    )]
    .into_iter()
    .collect();
    let provenance = if payloads.is_empty() {
        None
    } else {
        Some(
            reg.attach(
                &image.image,
                &blobs.manifest,
                PROVENANCE_TYPE,
                &payloads,
                &annotations,
            )
            .await?,
        )
    };
    reg.put_manifest(&image.image, build, manifest, stages::oci::MEDIA_MANIFEST)
        .await?;
    Ok(ImagePublished {
        image: image.image.clone(),
        tag: reg.tagged(&image.image, build),
        reference: report.reference.clone(),
        report,
        provenance,
    })
}

/// `Some` when the build tag of `image` names it already (one `HEAD`,
/// unless `known` says what it named when [`push_build_blobs`] looked):
/// everything it needs was pushed before the tag, so nothing is to do.
async fn already_tagged(
    reg: &Registry,
    build: &str,
    image: &IndexedImage,
    parts: &BTreeMap<String, Artifact>,
    known: Option<&Option<String>>,
) -> Result<Option<ImagePublished>> {
    let digest = format!("sha256:{}", image.sha256);
    let tagged = match known {
        Some(t) => t.clone(),
        None => reg.tagged_digest(&image.image, build).await?,
    };
    if tagged.as_deref() != Some(digest.as_str()) {
        return Ok(None);
    }
    let blobs: Vec<&Artifact> = parts
        .values()
        .filter(|a| a.name != image.artifact)
        .collect();
    let reference = reg.pinned(&image.image, &digest);
    Ok(Some(ImagePublished {
        image: image.image.clone(),
        tag: reg.tagged(&image.image, build),
        reference: reference.clone(),
        report: PushReport {
            reference,
            blobs_skipped: blobs.len(),
            bytes_skipped: blobs.iter().map(|a| a.blob.size).sum(),
            ..Default::default()
        },
        provenance: None,
    }))
}

/// The signed provenance of `build` (statement and detached signature) as
/// artifact layers, read from the store.
fn provenance(v: &index::Verified) -> Vec<(Vec<u8>, &'static str)> {
    let (statement, signature) = &v.provenance;
    vec![
        (statement.to_vec(), PROVENANCE_TYPE),
        (signature.to_vec(), "application/pgp-signature"),
    ]
}

/// What [`push_build_blobs`] did ahead of [`publish_build`].
#[derive(Debug, Clone, Default)]
pub struct Prepushed {
    /// The build the blobs are of.
    build: String,
    /// Per image, what its build tag named when checked (`None`: no tag).
    tagged: BTreeMap<String, Option<String>>,
    /// The blobs uploaded, by digest.
    uploaded: HashSet<String>,
}

/// Uploads the layers and configurations of the images of the local build
/// in `dir` that the registry lacks, and nothing else: no manifest, no tag.
/// `pipe publish` runs it beside the store's upload, so that the two
/// transfers overlap; [`publish_build`], run once the store holds the
/// build, finds the blobs there and pushes manifests, provenance and tags,
/// from the records it verified. Blobs alone change nothing anyone sees: no
/// tag or manifest names them. An image whose build tag names it already
/// costs one request (the `HEAD` of that tag, which [`publish_build`] does
/// not repeat), and no blob is looked at.
///
/// Which blobs: the images of the local build's index, each manifest
/// checked against the digest the build manifest lists; the registry
/// checks every blob's digest as it arrives.
pub async fn push_build_blobs(
    reg: &Registry,
    dir: &Path,
    progress: &dyn PushProgress,
) -> Result<Prepushed> {
    let local = dir.to_path_buf();
    let (manifest, index) =
        crate::store::digest::spawn_blocking(move || crate::records::manifest::read_local(&local))
            .await?;
    let mut out = Prepushed {
        build: manifest.build.clone(),
        ..Default::default()
    };
    for image in &index.images {
        let tagged = reg.tagged_digest(&image.image, &manifest.build).await?;
        let done = tagged.as_deref() == Some(format!("sha256:{}", image.sha256).as_str());
        out.tagged.insert(image.image.clone(), tagged);
        if done {
            continue;
        }
        let path = dir.join(&image.artifact);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(&path, e))?;
        let blobs = ImageBlobs::from_manifest(&bytes).map_err(|detail| Error::Verify {
            what: image.artifact.clone(),
            detail,
        })?;
        if bytes.len() > MAX_MANIFEST || blobs.manifest.hex() != image.sha256 {
            return Err(Error::Verify {
                what: image.artifact.clone(),
                detail: format!(
                    "expected sha256 {} (the build manifest), found {} ({} bytes)",
                    image.sha256,
                    blobs.manifest.hex(),
                    bytes.len()
                ),
            });
        }
        let source = LocalSource {
            dir: dir.to_path_buf(),
            parts: parts(&manifest, &image.image),
        };
        for (b, o) in reg
            .push_blobs(&image.image, &blobs, &source, &[], progress)
            .await?
        {
            if o == BlobOutcome::Uploaded {
                out.uploaded.insert(b.digest.clone());
            }
        }
    }
    Ok(out)
}

/// Pushes every image of the published build in `dir` (a
/// `.pipe/builds/<id>/` directory, already in `store`) to the registry,
/// tagged with the build id, with its provenance attached. Blobs come from
/// the build directory; the registry gets only those it lacks.
/// `prepushed`: what [`push_build_blobs`] did for this build before
/// (`Prepushed::default()` for nothing).
pub async fn publish_build(
    reg: &Registry,
    store: &Store,
    dir: &Path,
    build: &str,
    keyring: &keys::Keyring,
    progress: &dyn PushProgress,
    prepushed: &Prepushed,
) -> Result<Vec<ImagePublished>> {
    // Only what the project's key signed is pushed.
    let verified = index::load_verified(store, build, keyring).await?;
    let (published, manifest) = (&verified.published, &verified.manifest);
    if published.index.images.is_empty() {
        return Ok(Vec::new());
    }
    let created = keys::Timestamp::from_unix(manifest.source_date_epoch).to_string();
    let provenance = provenance(&verified);
    let mut out = Vec::new();
    for image in &published.index.images {
        let parts = parts(manifest, &image.image);
        // The build tag goes last: when it names the image, everything
        // before it is there. One `HEAD` for an image published already
        // (made by `push_build_blobs` when it ran).
        let known = (prepushed.build == build)
            .then(|| prepushed.tagged.get(&image.image))
            .flatten();
        if let Some(done) = already_tagged(reg, build, image, &parts, known).await? {
            out.push(done);
            continue;
        }
        let bytes = manifest_bytes(store, image).await?;
        let source = LocalSource {
            dir: dir.to_path_buf(),
            parts,
        };
        out.push(
            push_one(
                reg,
                build,
                image,
                &bytes,
                &source,
                &provenance,
                &created,
                progress,
                &prepushed.uploaded,
            )
            .await?,
        );
    }
    Ok(out)
}

/// Points `IMAGE:ENV` at the images of `build` (a manifest-only push each;
/// one `HEAD` and nothing written when a tag is right already). A registry
/// that lacks the image's blobs refuses the manifest, so a tag never names
/// an image it cannot serve.
pub async fn move_tags(
    reg: &Registry,
    store: &Store,
    images: &[IndexedImage],
    env: &str,
) -> Result<Vec<TagMoved>> {
    move_tags_known(reg, store, images, env, None).await
}

/// [`move_tags`] for a caller that knows where it left each tag
/// (`known`: `HOST/NAMESPACE/IMAGE:ENV` → digest, the registry view's
/// state). A tag left at this digest is checked first (one `HEAD`, nothing
/// written when it is right); any other is moved straight away (one `PUT`,
/// which moves it whatever it names): a promotion's tag move is one
/// request. `None`: every tag is checked first.
pub(crate) async fn move_tags_known(
    reg: &Registry,
    store: &Store,
    images: &[IndexedImage],
    env: &str,
    known: Option<&BTreeMap<String, String>>,
) -> Result<Vec<TagMoved>> {
    let mut out = Vec::new();
    for image in images {
        let digest = format!("sha256:{}", image.sha256);
        let tag = reg.tagged(&image.image, env);
        let check = known.is_none_or(|k| k.get(&tag) == Some(&digest));
        let moved = !check
            || reg.tagged_digest(&image.image, env).await?.as_deref() != Some(digest.as_str());
        if moved {
            let bytes = manifest_bytes(store, image).await?;
            reg.put_manifest(&image.image, env, &bytes, stages::oci::MEDIA_MANIFEST)
                .await?;
        }
        out.push(TagMoved {
            image: image.image.clone(),
            tag,
            digest,
            moved,
        });
    }
    Ok(out)
}

/// Fills the registry from the store alone: every published build's images
/// under the build id (with their provenance), then every environment's
/// tags. What the registry has already costs one `HEAD` per manifest (the
/// build tag of each image, each environment's tag).
pub async fn seed(
    reg: &Registry,
    store: &Store,
    envs: &[String],
    keyring: &keys::Keyring,
    progress: &dyn PushProgress,
) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    let builds: BTreeSet<String> = store
        .list(layout::BUILDS)
        .await?
        .iter()
        .filter(|o| o.key.ends_with(&format!("/{}", files::MANIFEST)))
        .filter_map(|o| layout::build_of(&o.key).map(str::to_string))
        .collect();
    for build in &builds {
        let verified = index::load_verified(store, build, keyring).await?;
        let (published, m) = (&verified.published, &verified.manifest);
        if published.index.images.is_empty() {
            continue;
        }
        report.builds += 1;
        for image in &published.index.images {
            if already_tagged(reg, build, image, &parts(m, &image.image), None)
                .await?
                .is_some()
            {
                report.present += 1;
                continue;
            }
            let created = keys::Timestamp::from_unix(m.source_date_epoch).to_string();
            let bytes = manifest_bytes(store, image).await?;
            let source = StoreSource {
                store,
                parts: parts(m, &image.image),
            };
            let prov = provenance(&verified);
            let pushed = push_one(
                reg,
                build,
                image,
                &bytes,
                &source,
                &prov,
                &created,
                progress,
                &HashSet::new(),
            )
            .await?;
            report.bytes_uploaded += pushed.report.bytes_uploaded;
            report.bytes_skipped += pushed.report.bytes_skipped;
            report.pushed.push(pushed);
        }
    }
    for env in envs {
        // The environment's head, its history verified against the keys.
        let Some(head) = history::verified_head(store, env, keyring).await? else {
            continue;
        };
        let published = index::load(store, &head.entry.build, keyring).await?;
        report
            .tags
            .extend(move_tags(reg, store, &published.index.images, env).await?);
    }
    Ok(report)
}
