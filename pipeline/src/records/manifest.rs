//! A build's manifest: what was built, from what, with which digests;
//! signed.
//!
//! The manifest holds nothing that varies between two builds of the same
//! inputs, so it is byte-identical too and its digest names the build.
//!
//! It is cut in two (format 2): `manifest.json`, the small signed root
//! (project, steps, `[deploy]`, and the digests of its shards), and the
//! shards, `manifests/<fan>/<blake3>.json` ([`Shard`]): the artifacts of the
//! components whose name falls in one bucket (up to 256, about 64
//! components each: [`bucket_count`]), with their input
//! files and what the consumer views need of them. A shard is named by its
//! content and shared between builds: a build that changes one package of
//! 20,000 writes one new shard and a new root; everything else it names is
//! there already. Every shard is capped in size and checked against the
//! digests the signed root names before anything in it is used
//! ([`load_shards`]).

use serde::{Deserialize, Serialize};

use super::index::{BuildIndex, Fragment};
use crate::artifact::Artifact;
use crate::store::{BlobRef, layout};
use crate::{Error, Result};

/// File names inside a build directory (`.pipe/builds/<id>/`) and under a
/// published build's prefix (`layout::build_file`).
pub(crate) mod files {
    /// The manifest.
    pub(crate) const MANIFEST: &str = "manifest.json";
    /// Its detached armored signature.
    pub(crate) const MANIFEST_SIG: &str = "manifest.json.asc";
    /// Where a build's manifest shards are, in a build directory and in the
    /// store ([`crate::store::layout::manifest_shard`]).
    pub(crate) const SHARDS: &str = "manifests";
    /// The in-toto statement with the SLSA provenance.
    pub(crate) const PROVENANCE: &str = "provenance.json";
    /// Its detached armored signature.
    pub(crate) const PROVENANCE_SIG: &str = "provenance.json.asc";
}

/// `manifest.json` of a build, with its shards read back: what the root
/// says (serialised: the root is what is signed) and every artifact and
/// input from its shards (not serialised; filled in by `load_shards`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The build id: `VERSION-` and the first 16 hex digits of the blake3
    /// digest of this manifest with `build` empty.
    pub build: String,
    /// Project name.
    pub project: String,
    /// Project version.
    pub version: String,
    /// Every timestamp in the artifacts.
    pub source_date_epoch: u64,
    /// The pipe that built it.
    pub tool: String,
    /// Digests of `pipeline.toml`.
    pub pipeline: BlobRef,
    /// The shards, by bucket: every artifact, input and index fragment is
    /// in one of them.
    #[serde(default)]
    pub shards: Vec<ShardRef>,
    /// Every artifact (from the shards).
    #[serde(skip)]
    pub artifacts: Vec<Artifact>,
    /// Every input file, relative to the project directory, with its
    /// digests (from the shards).
    #[serde(skip)]
    pub inputs: Vec<Input>,
    /// Every build step, with its cache key.
    pub steps: Vec<StepSummary>,
    /// `[deploy]` of the `pipeline.toml` the build was made from: what
    /// `pipe deploy` installs and writes, signed with the rest, so a deploy
    /// needs no checkout and deploys nothing nobody signed. Absent (empty)
    /// in manifests of an older pipe.
    #[serde(default, skip_serializing_if = "DeploySpec::is_empty")]
    pub deploy: DeploySpec,
}

/// A shard as the root names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    /// Its bucket: two hex digits (the first byte of the blake3 of the
    /// component's name), or `steps` for the build steps' inputs.
    pub bucket: String,
    /// Its digests and size.
    pub blob: BlobRef,
}

/// One shard of a manifest: the artifacts of the components of one bucket,
/// in build order, their input files and their index fragments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Shard {
    /// Manifest format version.
    pub format: u32,
    /// The bucket.
    pub bucket: String,
    /// The artifacts.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Their input files, by path.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// What the consumer views need of them.
    #[serde(default)]
    pub index: Vec<Fragment>,
}

/// A [`Shard`] read without its inputs (scanned, not kept).
#[derive(Deserialize)]
struct ShardWithoutInputs {
    format: u32,
    bucket: String,
    #[serde(default)]
    artifacts: Vec<Artifact>,
    #[serde(default, rename = "inputs")]
    _inputs: serde::de::IgnoredAny,
    #[serde(default)]
    index: Vec<Fragment>,
}

/// The shard bucket of the steps' inputs.
pub(crate) const STEPS_BUCKET: &str = "steps";

/// The largest manifest shard read: at 20,000 packages a shard is about
/// 160 KB.
pub(crate) const MAX_SHARD: u64 = 16 << 20;

/// The bucket of a component (its `Display`, `package NAME`) among
/// `buckets` (a power of two, at most 256).
pub(crate) fn bucket(component: &str, buckets: usize) -> String {
    let b = usize::from(blake3::hash(component.as_bytes()).as_bytes()[0]) % buckets.max(1);
    format!("{b:02x}")
}

/// Components per shard a build aims at: the bucket count is the power of
/// two nearest above `components / SHARD_COMPONENTS`, at most 256. A build
/// of 2,000 packages has 32 shards, one of 20,000 has 256 (about 80
/// packages, 160 KB, each); builds of about the same size share them.
pub(crate) const SHARD_COMPONENTS: usize = 64;

/// The bucket count of a build of `components` components.
pub(crate) fn bucket_count(components: usize) -> usize {
    components
        .div_ceil(SHARD_COMPONENTS)
        .next_power_of_two()
        .clamp(1, 256)
}

/// One artifact of a build, with what its shard keeps of it.
pub(crate) struct Part {
    /// The artifact.
    pub artifact: Artifact,
    /// The files it was made from.
    pub inputs: Vec<Input>,
    /// What the views need of it.
    pub fragment: Option<Fragment>,
}

/// A manifest's shards: their references (for the root) and their files
/// (name relative to the build directory or store root, bytes).
pub(crate) struct Sharded {
    /// For [`Manifest::shards`], in bucket order.
    pub refs: Vec<ShardRef>,
    /// Every shard file.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Cuts the parts of a build into shards by bucket; the steps' inputs go in
/// a shard of their own. Deterministic: the same parts give the same bytes.
pub(crate) fn shard(parts: Vec<Part>, step_inputs: Vec<Input>) -> Sharded {
    use std::collections::BTreeMap;
    let mut shards: BTreeMap<String, Shard> = BTreeMap::new();
    let mut inputs: BTreeMap<String, BTreeMap<String, BlobRef>> = BTreeMap::new();
    let components: std::collections::BTreeSet<String> = parts
        .iter()
        .map(|p| p.artifact.component.to_string())
        .collect();
    let buckets = bucket_count(components.len());
    for p in parts {
        let b = bucket(&p.artifact.component.to_string(), buckets);
        let shard = shards.entry(b.clone()).or_insert_with(|| Shard {
            format: MANIFEST_FORMAT,
            bucket: b.clone(),
            ..Shard::default()
        });
        shard.artifacts.push(p.artifact);
        shard.index.extend(p.fragment);
        let into = inputs.entry(b).or_default();
        for i in p.inputs {
            into.insert(i.path, i.blob);
        }
    }
    if !step_inputs.is_empty() {
        shards.insert(
            STEPS_BUCKET.into(),
            Shard {
                format: MANIFEST_FORMAT,
                bucket: STEPS_BUCKET.into(),
                ..Shard::default()
            },
        );
        let into = inputs.entry(STEPS_BUCKET.into()).or_default();
        for i in step_inputs {
            into.insert(i.path, i.blob);
        }
    }
    let mut sharded = Sharded {
        refs: Vec::new(),
        files: Vec::new(),
    };
    for (b, mut shard) in shards {
        shard.inputs = inputs
            .remove(&b)
            .unwrap_or_default()
            .into_iter()
            .map(|(path, blob)| Input { path, blob })
            .collect();
        let bytes = crate::json::to_vec(&shard);
        let blob = BlobRef {
            blake3: blake3::hash(&bytes).to_hex().to_string(),
            sha256: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&bytes))
            },
            size: bytes.len() as u64,
        };
        sharded
            .files
            .push((layout::manifest_shard(&blob.blake3), bytes));
        sharded.refs.push(ShardRef { bucket: b, blob });
    }
    sharded
}

/// Reads the shards `manifest` names (each through `read`, given its file
/// name, which says why it could not when it cannot), checks each against
/// the digests and size the root names (refusing one larger than
/// [`MAX_SHARD`] before parsing it), fills in the manifest's artifacts and
/// inputs, and returns what the views need of them, each index fragment
/// checked to be one of the shard's artifacts with its digest. Any
/// mismatch is [`Error::Verify`]: the shard is not what was signed.
pub(crate) fn load_shards(
    manifest: &mut Manifest,
    read: impl FnMut(&str) -> std::result::Result<Vec<u8>, String>,
) -> Result<BuildIndex> {
    load_shards_with(manifest, read, true)
}

/// [`load_shards`]; without `inputs`, the shards' input lists are checked
/// to be JSON but not read into [`Manifest::inputs`] (left empty): what a
/// promotion needs is the artifacts and their index, and the inputs are
/// about half of a shard's bytes.
pub(crate) fn load_shards_with(
    manifest: &mut Manifest,
    mut read: impl FnMut(&str) -> std::result::Result<Vec<u8>, String>,
    with_inputs: bool,
) -> Result<BuildIndex> {
    use std::collections::BTreeMap;
    let mut artifacts = Vec::new();
    let mut inputs: BTreeMap<String, BlobRef> = BTreeMap::new();
    let mut fragments = Vec::new();
    for r in &manifest.shards {
        let name = layout::manifest_shard(&r.blob.blake3);
        let refuse = |detail: String| Error::Verify {
            what: name.clone(),
            detail,
        };
        if r.blob.size > MAX_SHARD {
            return Err(refuse(format!(
                "the manifest names a shard of {} bytes, more than the {MAX_SHARD} a shard may have",
                r.blob.size
            )));
        }
        let bytes = read(&name).map_err(|e| {
            refuse(format!(
                "cannot be read ({e}); a build is only trusted whole"
            ))
        })?;
        if bytes.len() as u64 > MAX_SHARD {
            return Err(refuse(format!(
                "{} bytes, more than the {MAX_SHARD} a shard may have",
                bytes.len()
            )));
        }
        let found = blake3::hash(&bytes).to_hex().to_string();
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        if found != r.blob.blake3 || sha256 != r.blob.sha256 || bytes.len() as u64 != r.blob.size {
            return Err(refuse(format!(
                "blake3 {found}, {} bytes, but the signed manifest names blake3 {}, {} bytes: the shard was changed or swapped",
                bytes.len(),
                r.blob.blake3,
                r.blob.size
            )));
        }
        let not_a_shard = |e: serde_json::Error| {
            refuse(format!(
                "bound to the signed manifest, but not a shard pipe reads: {e}"
            ))
        };
        let shard: Shard = if with_inputs {
            serde_json::from_slice(&bytes).map_err(not_a_shard)?
        } else {
            let s: ShardWithoutInputs = serde_json::from_slice(&bytes).map_err(not_a_shard)?;
            Shard {
                format: s.format,
                bucket: s.bucket,
                artifacts: s.artifacts,
                inputs: Vec::new(),
                index: s.index,
            }
        };
        if shard.bucket != r.bucket {
            return Err(refuse(format!(
                "is bucket {}, the manifest names it for bucket {}",
                shard.bucket, r.bucket
            )));
        }
        let digests: BTreeMap<&str, &str> = shard
            .artifacts
            .iter()
            .map(|a| (a.name.as_str(), a.blob.sha256.as_str()))
            .collect();
        for f in &shard.index {
            let (artifact, sha256) = f.entry();
            if digests.get(artifact) != Some(&sha256) {
                return Err(refuse(format!(
                    "indexes `{artifact}` with sha256 {sha256}, which is not an artifact of the shard ({})",
                    digests.get(artifact).unwrap_or(&"absent")
                )));
            }
        }
        artifacts.extend(shard.artifacts);
        fragments.extend(shard.index);
        for i in shard.inputs {
            inputs.insert(i.path, i.blob);
        }
    }
    manifest.artifacts = artifacts;
    manifest.inputs = inputs
        .into_iter()
        .map(|(path, blob)| Input { path, blob })
        .collect();
    Ok(BuildIndex::from_fragments(&fragments))
}

/// The shard file names the root in `manifest_bytes` names, read before it
/// is verified so that a caller can fetch them; nothing in them is believed
/// until [`load_shards`] checked them against the verified root. Empty when
/// the bytes are not a manifest (the verification says so).
pub(crate) fn shard_names(manifest_bytes: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Manifest>(manifest_bytes)
        .map(|m| {
            m.shards
                .iter()
                .take(MAX_SHARDS)
                .map(|r| layout::manifest_shard(&r.blob.blake3))
                .collect()
        })
        .unwrap_or_default()
}

/// More shards than buckets is not a manifest this pipe wrote.
const MAX_SHARDS: usize = 257;

/// The `[deploy]` section as a build records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// Files written at deploy time: absolute path to template text.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, String>,
    /// The packages a deploy installs; empty means every package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// A command run after the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The packages whose `mode`s may set the setuid, setgid or
    /// world-writable bit (`allow_special_modes`); deploy refuses such an
    /// entry of any other package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_modes: Vec<String>,
}

impl DeploySpec {
    /// True when the section says nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.packages.is_empty()
            && self.after.is_none()
            && self.special_modes.is_empty()
    }
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Path relative to the project directory.
    pub path: String,
    /// Its digests.
    pub blob: BlobRef,
}

/// A build step as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step name.
    pub name: String,
    /// Its cache key.
    pub key: String,
}

/// The manifest format this pipe writes (2: a root and its shards).
pub(crate) const MANIFEST_FORMAT: u32 = 2;

impl Manifest {
    /// Fills in `build` from the digest of everything else.
    pub(crate) fn seal(mut self) -> Manifest {
        self.build = String::new();
        let digest = blake3::hash(&self.to_json());
        self.build = format!("{}-{}", self.version, &digest.to_hex()[..16]);
        self
    }

    /// The canonical bytes: pretty JSON, fields in declaration order, a final
    /// newline.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut v = crate::json::to_vec_pretty(self);
        v.push(b'\n');
        v
    }
}

/// Store key of a published build's file.
pub(crate) fn build_key(build: &str, file: &str) -> String {
    layout::build_file(build, file)
}

/// Parses a manifest's root; `what` names where it came from. A manifest of
/// another format (an older pipe's, which listed every artifact and input
/// itself) is refused, with the hint to build again.
pub(crate) fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::Verify {
        what: what.to_string(),
        detail: format!("not a build manifest: {e}"),
    })?;
    if m.format != MANIFEST_FORMAT {
        return Err(Error::Usage {
            message: format!(
                "{what} is a manifest of format {}; this pipe reads format {MANIFEST_FORMAT} (a signed root and its shards)",
                m.format
            ),
            hint: Some(
                "a build of an older pipe: run `pipe build` and `pipe publish` again with this one"
                    .into(),
            ),
        });
    }
    if m.shards.len() > MAX_SHARDS {
        return Err(Error::Verify {
            what: what.to_string(),
            detail: format!(
                "names {} shards, more than the {MAX_SHARDS} a manifest has",
                m.shards.len()
            ),
        });
    }
    Ok(m)
}

/// Reads the unpublished build in `dir` (a `.pipe/builds/<id>/` directory):
/// its manifest and shards, checked against each other (not against a
/// signature: this is the local build `pipe publish` sends, whose records
/// every reader verifies).
pub(crate) fn read_local(dir: &std::path::Path) -> Result<(Manifest, BuildIndex)> {
    let path = dir.join(files::MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let mut m = parse_manifest(&bytes, &path.display().to_string())?;
    let index = load_shards(&mut m, |name| {
        std::fs::read(dir.join(name)).map_err(|e| e.to_string())
    })?;
    Ok((m, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_hold_about_64_components_and_at_most_256_buckets() {
        assert_eq!(bucket_count(0), 1);
        assert_eq!(bucket_count(64), 1);
        assert_eq!(bucket_count(65), 2);
        assert_eq!(bucket_count(2_000), 32);
        assert_eq!(bucket_count(20_000), 256);
        assert_eq!(bucket("package hello", 1), "00");
        assert!(bucket("package hello", 256).len() == 2);
    }
}
