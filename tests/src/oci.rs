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

/// A docker daemon of its own: `dockerd` (Debian `docker.io`) started from
/// the test with its own `--data-root`, `--exec-root`, pid file and socket
/// in a temp dir, the vfs storage driver, and no networking (no bridge, no
/// iptables rules): enough to load, inspect, create and export images; no
/// container is ever started. Stopped (and its containerd with it) on drop.
/// If it cannot start the test fails with its log.
pub struct Docker {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Docker {
    /// Starts the daemon and waits (up to 60 s) until it answers.
    pub fn start() -> Docker {
        // Short paths: a unix socket path has at most 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("pipe-dockerd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let mut cmd = Command::new("/usr/sbin/dockerd");
        cmd.arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--containerd-namespace",
                "pipe-test",
                "--containerd-plugins-namespace",
                "pipe-test-plugins",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        crate::s3::kill_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start /usr/sbin/dockerd: {e} (run scripts/install-deps.sh test)")
        });
        let mut docker = Docker { child, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = docker.child.try_wait() {
                panic!("dockerd exited with {status}; log:\n{}", docker.log());
            }
            if try_run(&mut docker.cmd(&["version"])).status.success() {
                return docker;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not answer within 60 s; log:\n{}",
                docker.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .args(args);
        cmd
    }

    /// `docker ARGS` against this daemon; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = run(&mut self.cmd(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containerd and unmounts what it mounted.
        // SAFETY: a plain kill(2) of our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
