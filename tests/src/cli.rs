//! Running the real `pipe` binary in scratch projects.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `pipe` binary of this workspace's build.
///
/// Cargo does not build another package's binaries for this crate's tests, so
/// the test scripts run `cargo build --workspace` first; a missing binary is
/// an error that says so rather than a skipped test.
pub fn pipe_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PIPE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/pipe
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("pipe");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p pipeline` before the tests (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The workspace root (for `examples/`, `scripts/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// What one `pipe` run did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as the one JSON document `--json` promises.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }

    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A scratch project directory with helpers to write files and run `pipe`.
pub struct Project {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    /// An empty project directory.
    pub fn new() -> Self {
        Project {
            dir: tempfile::Builder::new()
                .prefix("pipe-test-")
                .tempdir()
                .expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// A copy of `examples/NAME`. The example's machine base
    /// (`vendor/rootfs.tar.gz`, made by `scripts/example.sh`, not in git) is
    /// a skeleton when the checkout has none: enough for `validate` and
    /// `build --plan`, which only check that it exists.
    pub fn example(name: &str) -> Self {
        let p = Self::new();
        copy_dir(&workspace_root().join("examples").join(name), p.path());
        let base = p.path().join("vendor/rootfs.tar.gz");
        if name == "hello" && !base.exists() {
            std::fs::copy(
                workspace_root().join("tests/support/skeleton-rootfs.tar.gz"),
                &base,
            )
            .unwrap();
        }
        p
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `rel` (creating directories).
    pub fn write(&self, rel: &str, contents: &str) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    /// Generates the project's signing key (`keys/release.key` unless
    /// `pipeline.toml` says otherwise) with `pipe keys generate`. Ed25519,
    /// because it is instant; tests that need RSA generate it themselves.
    pub fn with_signing_key(&self) -> &Self {
        self.pipe(&[
            "keys",
            "generate",
            "--uid",
            "Test Release <release@example.com>",
            "--algo",
            "ed25519",
        ])
        .expect_code(0);
        self
    }

    /// Generates an RSA 3072 signing key (what apt's gpgv, dnf and rpm all
    /// verify) and exports its public keyring to `release.asc`; returns
    /// that path, for the consumers.
    pub fn with_rsa_key(&self) -> PathBuf {
        self.pipe(&[
            "keys",
            "generate",
            "--uid",
            "Demo Release <release@example.com>",
            "--algo",
            "rsa3072",
        ])
        .expect_code(0);
        self.pipe(&["keys", "export", "--out", "release.asc"])
            .expect_code(0);
        self.path().join("release.asc")
    }

    /// Sets `version` in `[project]`, then builds and publishes; returns
    /// the build id.
    pub fn release(&self, version: &str) -> String {
        let build = self.build(version);
        self.pipe(&["publish", &build]).expect_code(0);
        build
    }

    /// Sets `version` in `[project]`, then builds; returns the build id.
    pub fn build(&self, version: &str) -> String {
        self.set_version(version);
        self.pipe(&["--json", "build"]).expect_code(0).json()["build"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Sets `version` in `[project]` of `pipeline.toml`.
    pub fn set_version(&self, version: &str) -> &Self {
        let toml = std::fs::read_to_string(self.path().join("pipeline.toml")).unwrap();
        let toml: String = toml
            .lines()
            .map(|l| {
                if l.starts_with("version = ") {
                    format!("version = \"{version}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        self.write("pipeline.toml", &toml)
    }

    /// Sets an environment variable for every later `pipe` run.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `pipe -C <project> ARGS`.
    pub fn pipe(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(pipe_bin());
        cmd.arg("-C").arg(self.path()).args(args);
        run(cmd, &self.env)
    }

    /// Exports the project's public keyring to `ring.asc` in the project and
    /// returns its path (what an operator gives `--keyring`).
    pub fn keyring(&self) -> String {
        self.pipe(&["keys", "export", "--out", "ring.asc"])
            .expect_code(0);
        self.path().join("ring.asc").to_string_lossy().into_owned()
    }

    /// Starts `n` `pipe -C <project> ARGS` processes (with `env` added) that
    /// each run until their barrier (`PIPE_TEST_BARRIER`), then releases them
    /// together; returns their runs in start order.
    pub fn race(&self, n: usize, args: &[&str], env: &[(String, String)]) -> Vec<Run> {
        let barrier = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..n)
            .map(|_| {
                Command::new(pipe_bin())
                    .arg("-C")
                    .arg(self.path())
                    .args(args)
                    .envs(self.env.iter().map(|(k, v)| (k, v)))
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .env("PIPE_TEST_BARRIER", barrier.path())
                    .env_remove("PIPE_STORE")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_dir(barrier.path()).unwrap().count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the processes never reached the barrier"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(barrier.path().join("go"), b"").unwrap();
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                Run {
                    code: out.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }
            })
            .collect()
    }

    /// Starts `pipe -C <project> ARGS` (with `env` added) in the background.
    pub fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let child = Command::new(pipe_bin())
            .arg("-C")
            .arg(self.path())
            .args(args)
            .env_remove("PIPE_STORE")
            .env_remove("PIPE_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pipe");
        Running(child)
    }

    /// Runs `pipe ARGS` with the project as the working directory (so paths in
    /// messages are relative, as a user sees them).
    pub fn pipe_here(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(pipe_bin());
        cmd.current_dir(self.path()).args(args);
        run(cmd, &self.env)
    }
}

/// A `pipe` process started with [`Project::start`].
pub struct Running(std::process::Child);

impl Running {
    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().expect("poll pipe").is_some()
    }

    /// Kills the process (SIGKILL, as `kill -9`) and returns what it
    /// printed until then.
    pub fn kill(mut self) -> Run {
        let _ = self.0.kill();
        self.wait()
    }

    /// Waits for the process and returns what it did.
    pub fn wait(self) -> Run {
        let out = self.0.wait_with_output().expect("wait for pipe");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Waits (at most a minute) until `path` exists.
pub fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn run(mut cmd: Command, env: &[(String, String)]) -> Run {
    cmd.env_remove("PIPE_STORE")
        .env_remove("PIPE_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let out = cmd.output().expect("run pipe");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Copies a directory tree, keeping file modes.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            if entry.file_name() == ".pipe" {
                continue;
            }
            copy_dir(&entry.path(), &target);
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
