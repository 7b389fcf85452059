//! `pipe deploy --env ENV --machine NAME --out DIR`: the machine-image side
//! of deploy. It resolves and verifies the environment's pointer, history
//! and build records exactly as a directory deploy does, fetches the
//! machine's images (each checked against the signed manifest's digests
//! while streaming, and renamed into `DIR` only when it matches), and writes
//! the cloud-init NoCloud seed that gives a machine started from the image
//! its deploy-time files at first boot: `DIR/seed/{user-data,meta-data}`
//! and `DIR/seed.iso` (or `DIR/seed.vfat`).
//!
//! The image is never modified: what differs per environment travels in
//! the seed, so every environment boots the same, signed bytes.

use std::path::{Path, PathBuf};

use keys::Keyring;
use serde::Serialize;
use stages::machine::seed::{self, Seed, SeedFile, SeedImage};

use super::{Timings, render_files, resolve, target};
use crate::artifact::{ArtifactKind, Component};
use crate::store::Store;
use crate::{Error, Result};

/// What a machine deploy asks for.
#[derive(Debug, Clone)]
pub struct MachineRequest<'a> {
    /// The environment whose build to take the image from.
    pub env: &'a str,
    /// `[machines.NAME]`.
    pub machine: &'a str,
    /// Where the images and the seed go.
    pub out: &'a Path,
    /// The keys to trust.
    pub keyring: &'a Keyring,
    /// `--set NAME=VALUE`.
    pub sets: &'a [(String, String)],
    /// The seed image to write beside the directory.
    pub seed_image: SeedImage,
}

/// One fetched image.
#[derive(Debug, Clone, Serialize)]
pub struct FetchedImage {
    /// `raw` or `qcow2`.
    pub format: String,
    /// Where it is.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Its SHA-256, as signed in the manifest.
    pub sha256: String,
}

/// What a machine deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct MachineReport {
    /// The environment.
    pub env: String,
    /// The build.
    pub build: String,
    /// The machine.
    pub machine: String,
    /// The images.
    pub images: Vec<FetchedImage>,
    /// The seed directory.
    pub seed_dir: PathBuf,
    /// The seed image.
    pub seed_image: PathBuf,
    /// The deploy-time files the seed writes.
    pub files: Vec<String>,
    /// The seed's `instance-id`.
    pub instance_id: String,
}

/// Fetches and verifies `req.machine`'s images of the build `req.env`
/// points at, and writes the seed.
pub async fn deploy_machine(
    store: std::result::Result<Store, Error>,
    req: &MachineRequest<'_>,
) -> Result<MachineReport> {
    let store = store?;
    let out = std::path::absolute(req.out).map_err(|e| Error::io(req.out, e))?;
    let mut t = Timings::default();
    let resolved = resolve(
        Ok(&store),
        req.env,
        req.keyring,
        std::slice::from_ref(&out),
        &mut t,
    )
    .await?;
    let build = resolved.head.entry.build.clone();
    let component = Component::Machine(req.machine.to_string());
    let images: Vec<_> = resolved
        .signed
        .manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == ArtifactKind::MachineImage && a.component == component)
        .filter_map(|a| {
            let format = a.name.strip_prefix(&format!("{}.", req.machine))?;
            matches!(format, "raw" | "qcow2").then(|| (a.clone(), format.to_string()))
        })
        .collect();
    if images.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "build `{build}` (in `{}`) has no image of machine `{}`",
                req.env, req.machine
            ),
            hint: Some("build and publish the machine, then promote that build".into()),
        });
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut fetched = Vec::new();
    for (a, format) in images {
        let path = out.join(&a.name);
        // Verified while streaming; appears only when it matches.
        store.get_blob_to_file(&a.blob, &path).await?;
        fetched.push(FetchedImage {
            format,
            path,
            size: a.blob.size,
            sha256: a.blob.sha256.clone(),
        });
    }

    let rendered = render_files(req.env, &resolved, req.sets)?;
    let config = target::config_digest(&rendered);
    let instance_id = format!(
        "pipe-{}-{}-{}-{}",
        req.machine,
        req.env,
        &build[..12.min(build.len())],
        &config[..12.min(config.len())]
    );
    let seed = Seed {
        instance_id: instance_id.clone(),
        hostname: Some(req.machine.to_string()),
        files: rendered
            .iter()
            .map(|(path, text)| SeedFile {
                path: path.clone(),
                content: text.as_bytes().to_vec(),
                // As a directory deploy writes them.
                mode: 0o644,
                owner: "root:root".into(),
            })
            .collect(),
        epoch: resolved.signed.manifest.source_date_epoch,
    };
    let seed_dir = out.join("seed");
    let seed_image = out.join(req.seed_image.file_name());
    let (s, d, i, k) = (
        seed.clone(),
        seed_dir.clone(),
        seed_image.clone(),
        req.seed_image,
    );
    crate::store::digest::spawn_blocking(move || {
        seed::write_dir(&s, &d)?;
        seed::write_image(&s, &d, k, &i)?;
        Ok(())
    })
    .await?;
    Ok(MachineReport {
        env: req.env.to_string(),
        build,
        machine: req.machine.to_string(),
        images: fetched,
        seed_dir,
        seed_image,
        files: rendered.into_iter().map(|(p, _)| p).collect(),
        instance_id,
    })
}
