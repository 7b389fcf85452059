//! The OCI consumers: skopeo, umoci and podman, confined to temp dirs
//! (podman with its own `--root`/`--runroot`, the vfs driver and no events
//! log, so nothing touches the machine's container storage). A tool that is
//! missing or fails makes the test fail with its output, never skip.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::consumers::{run, text, try_run};

/// `skopeo ARGS` (never asking the machine's policy: an insecure accept-all
/// policy file in a temp dir, as a test registry needs).
pub fn skopeo(args: &[&str]) -> String {
    let out = run(&mut skopeo_cmd(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo ARGS`, whatever its status: (success, stdout+stderr).
pub fn try_skopeo(args: &[&str]) -> (bool, String) {
    let out = try_run(&mut skopeo_cmd(args));
    (out.status.success(), text(&out))
}

fn skopeo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--policy").arg(policy_file()).args(args);
    cmd
}

/// A policy accepting everything, written once per process.
fn policy_file() -> PathBuf {
    static POLICY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap().keep();
            let p = dir.join("policy.json");
            std::fs::write(&p, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
            p
        })
        .clone()
}

/// `skopeo inspect` (parsed) of `reference`.
pub fn inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(reference);
    serde_json::from_str(&skopeo(&args)).expect("skopeo inspect prints JSON")
}

/// The manifest digest skopeo computes for `reference`.
pub fn digest_of(reference: &str, extra: &[&str]) -> String {
    inspect(reference, extra)["Digest"]
        .as_str()
        .expect("skopeo inspect has a Digest")
        .to_string()
}

/// What a directory tree holds: path → (kind and mode, content or link
/// target, uid).
pub type Listing = BTreeMap<String, (String, Vec<u8>, u32)>;

/// Lists `root` (relative paths, `d`/`f`/`l` plus octal permission bits).
pub fn listing(root: &Path) -> Listing {
    let mut out = BTreeMap::new();
    for e in walkdir(root) {
        let rel = e.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel.is_empty() {
            continue;
        }
        let meta = std::fs::symlink_metadata(&e).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let (kind, content) = if meta.file_type().is_symlink() {
            (
                "l",
                std::fs::read_link(&e)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes(),
            )
        } else if meta.is_dir() {
            ("d", Vec::new())
        } else {
            ("f", std::fs::read(&e).unwrap())
        };
        out.insert(rel, (format!("{kind}{mode:04o}"), content, meta.uid()));
    }
    out
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            out.extend(children);
        }
    }
    out
}

/// The image `reference` (`oci-archive:FILE`, ...) copied by skopeo into an
/// OCI directory under `work` and unpacked there by `umoci unpack`; returns
/// the root filesystem.
pub fn umoci_unpack(reference: &str, work: &Path) -> PathBuf {
    let oci = work.join("oci");
    skopeo(&["copy", reference, &format!("oci:{}:t", oci.display())]);
    let bundle = work.join("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:t", oci.display()),
        &bundle.display().to_string(),
    ]));
    bundle.join("rootfs")
}

/// podman with its own storage under a temp dir.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Podman {
    /// Empty storage.
    pub fn new() -> Podman {
        Podman {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `podman ARGS` confined to this storage; panics with its output on
    /// failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = run(&mut self.cmd(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .env("REGISTRIES_CONFIG_PATH", d.join("registries.conf"))
            .args(args);
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::write(
            d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        cmd
    }

    /// The digest podman records for `image`.
    pub fn digest(&self, image: &str) -> String {
        self.run(&["image", "inspect", "--format", "{{.Digest}}", image])
            .trim()
            .to_string()
    }
}
