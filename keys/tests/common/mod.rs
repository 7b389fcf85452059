//! Shared test helpers: a throw-away GnuPG home, fixed times, key fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keys::{Algorithm, GenerateOptions, SecretKey};

/// 2020-09-13T12:26:40Z: creation time of fixture keys.
pub const KEY_CREATED: u64 = 1_600_000_000;
/// 2023-11-14T22:13:20Z: signing time used by most tests.
pub const SIGNED: u64 = 1_700_000_000;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn key(uid: &str, algorithm: Algorithm) -> SecretKey {
    let mut opts = GenerateOptions::new(uid);
    opts.algorithm = algorithm;
    opts.creation_time = Some(at(KEY_CREATED));
    SecretKey::generate(&opts).expect("generate key")
}

/// Fails (never skips) when a GnuPG tool is missing.
pub fn require(tool: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{tool} --version` failed ({}): these tests need a working GnuPG; \
             install it with `scripts/install-deps.sh build`",
            o.status
        ),
        Err(e) => panic!(
            "`{tool}` is required by these tests but cannot be run ({e}); \
             install GnuPG with `scripts/install-deps.sh build`"
        ),
    }
}

/// A GnuPG home in a temporary directory; its agent is stopped on drop.
pub struct Gpg {
    pub dir: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        require("gpg");
        require("gpgv");
        require("gpgconf");
        // Short path: the agent socket lives in it.
        let dir = tempfile::Builder::new()
            .prefix("pgh")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Gpg { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn command(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .env("GNUPGHOME", self.home())
            .env_remove("GPG_AGENT_INFO")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// Runs `gpg --batch --status-fd 2 ...` (status lines go to stderr, so
    /// stdout is only data) and returns its output.
    pub fn gpg(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--batch",
            "--no-tty",
            "--status-fd",
            "2",
            "--pinentry-mode",
            "loopback",
        ];
        all.extend_from_slice(args);
        self.command("gpg", &all)
    }

    /// Like [`Gpg::gpg`], but panics unless it succeeds; returns stdout.
    pub fn gpg_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.gpg(args);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs `gpgv --status-fd 2 --keyring KEYRING ARGS...`.
    pub fn gpgv(&self, keyring: &Path, args: &[&str]) -> Output {
        let keyring = keyring.to_str().unwrap();
        let mut all = vec!["--status-fd", "2", "--keyring", keyring];
        all.extend_from_slice(args);
        self.command("gpgv", &all)
    }

    /// Generates a key in this home (`passphrase` may be empty); returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str, passphrase: &str) -> String {
        self.gpg_ok(&[
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            uid,
            algo,
            "cert,sign",
            "never",
        ]);
        self.fingerprint(uid)
    }

    pub fn fingerprint(&self, who: &str) -> String {
        let out = self.gpg_ok(&["--with-colons", "--list-keys", who]);
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("a fingerprint")
            .to_string()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a gpg/gpgv run verified a good signature by `fingerprint`.
pub fn assert_valid_sig(out: &Output, fingerprint: &str) {
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verification failed:\n{}", show(out));
    assert!(
        text.contains(&format!("[GNUPG:] VALIDSIG {fingerprint}")),
        "no VALIDSIG {fingerprint}:\n{}",
        show(out)
    );
}
