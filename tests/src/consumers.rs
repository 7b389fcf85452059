//! Real consumers of the repositories pipe writes, confined to temp dirs:
//! apt-get and dnf, a loopback HTTP server to serve a store, and running
//! tools (a missing tool is a failure, never a skip).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

/// Runs `cmd`, panicking with its output if it cannot start or fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = try_run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` and returns its output whatever its status; panics (with how
/// to install it) if the program is missing.
pub fn try_run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e}. The consumer tests need real apt-get, dpkg-deb, dnf, rpm, \
             rpmbuild and createrepo_c: run scripts/install-deps.sh test",
            cmd.get_program()
        )
    })
}

/// Combined stdout and stderr, for assertions.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Lower-case hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(<md5::Md5 as md5::Digest>::digest(data))
}

/// An RSA signing key (RSA: what every apt, rpm and dnf verifies).
pub fn signing_key() -> keys::SecretKey {
    let mut opts = keys::GenerateOptions::new("pipe test <test@example.invalid>");
    opts.algorithm = keys::Algorithm::Rsa3072;
    keys::SecretKey::generate(&opts).expect("generate key")
}

/// A static HTTP server on 127.0.0.1 serving `dir` (Python's
/// `http.server`), killed when dropped.
pub struct HttpServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl HttpServer {
    /// Serves `dir`.
    pub fn start(dir: &Path) -> HttpServer {
        // Python picks the port itself (port 0 is not supported by
        // http.server's CLI), so find a free one and retry on a clash.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1"])
                .arg(port.to_string())
                .arg("--directory")
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start python3 -m http.server: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return HttpServer { child, port };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start an HTTP server on 127.0.0.1");
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET /{path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP header");
        let head = String::from_utf8_lossy(&resp[..end]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, resp[end + 4..].to_vec())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `path`'s parent directories and writes `bytes`.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Creates `path` and its parents.
pub fn mkdir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// An apt configuration confined to `dir` (its own sources, state, cache,
/// no system configuration parts, no locking, runs as the current user).
pub struct Apt {
    /// Its state, cache and download directories live here.
    pub dir: PathBuf,
    conf: PathBuf,
}

impl Apt {
    /// An apt reading suite `suite` (component `main`) at `url`, trusting
    /// only `keyring`.
    pub fn new(dir: PathBuf, url: &str, suite: &str, keyring: &Path) -> Apt {
        let empty = mkdir(dir.join("empty"));
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "log",
            "download",
        ] {
            mkdir(dir.join(d));
        }
        write(&dir.join("state/status"), "");
        write(
            &dir.join("sources.list"),
            format!("deb [signed-by={}] {url} {suite} main\n", keyring.display()),
        );
        let conf = dir.join("apt.conf");
        let e = empty.display();
        let d = dir.display();
        write(
            &conf,
            format!(
                r#"Dir::Etc::Parts "{e}";
Dir::Etc::SourceList "{d}/sources.list";
Dir::Etc::SourceParts "{e}";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "{e}";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "{e}";
Dir::State "{d}/state";
Dir::State::status "{d}/state/status";
Dir::Cache "{d}/cache";
Dir::Log "{d}/log";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; }};
APT::Sandbox::User "root";
Debug::NoLocking "1";
Acquire::Languages "none";
Acquire::Retries "0";
Acquire::http::Proxy "DIRECT";
"#
            ),
        );
        Apt { dir, conf }
    }

    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", &self.conf)
            .env("LC_ALL", "C")
            .current_dir(self.dir.join("download"));
        c
    }

    /// `apt-get update`, whatever its outcome.
    pub fn update(&self) -> std::process::Output {
        try_run(self.cmd("apt-get").args(["-q", "update"]))
    }

    /// `apt-get download NAME`; returns the downloaded file's name.
    pub fn download(&self, name: &str) -> String {
        let dl = self.dir.join("download");
        for f in std::fs::read_dir(&dl).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        run(self.cmd("apt-get").args(["-q", "download", name]));
        let files: Vec<String> = std::fs::read_dir(&dl)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }
}

/// dnf confined to a temp dir: its own config, repo file, cache, log,
/// install root.
pub struct Dnf {
    /// Its config, cache and install root (`root/`) live here.
    pub dir: PathBuf,
}

impl Dnf {
    /// dnf reading the repository at `url` with `gpgcheck` and
    /// `repo_gpgcheck`, trusting only `key_asc`.
    pub fn new(dir: PathBuf, url: &str, key_asc: &Path) -> Dnf {
        for d in ["root", "cache", "log", "repos.d", "persist"] {
            mkdir(dir.join(d));
        }
        let d = dir.display();
        write(
            &dir.join("dnf.conf"),
            format!(
                "[main]\ngpgcheck=1\nrepo_gpgcheck=1\nreposdir={d}/repos.d\ncachedir={d}/cache\nlogdir={d}/log\npersistdir={d}/persist\nkeepcache=0\ninstall_weak_deps=0\nmetadata_expire=0\nskip_if_unavailable=0\n"
            ),
        );
        write(
            &dir.join("repos.d/pipe.repo"),
            format!(
                "[pipe]\nname=pipe\nbaseurl={url}\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://{}\n",
                key_asc.display()
            ),
        );
        Dnf { dir }
    }

    /// dnf with `args`, whatever its outcome.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let d = &self.dir;
        try_run(
            Command::new("dnf")
                .arg("-c")
                .arg(d.join("dnf.conf"))
                .arg("--installroot")
                .arg(d.join("root"))
                .arg(format!("--setopt=reposdir={}", d.join("repos.d").display()))
                .args([
                    "--releasever=1",
                    "--disablerepo=*",
                    "--enablerepo=pipe",
                    "-y",
                ])
                .args(args)
                .env("LC_ALL", "C.UTF-8"),
        )
    }

    /// dnf with `args`, which must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let t = text(&out);
        assert!(out.status.success(), "dnf {args:?}:\n{t}");
        t
    }
}
