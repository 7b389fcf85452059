//! A real S3-compatible server (moto) on 127.0.0.1, one per test.
//!
//! moto runs from the venv `scripts/install-deps.sh moto` makes (installed on
//! first use), through `tests/support/moto_server.py`, which applies each
//! request atomically as S3 does (moto alone lets racing conditional writes
//! both succeed). If moto cannot be installed or started, the test fails with
//! the reason: it is never skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::store::{S3Overrides, StoreUrl};

/// Access key moto accepts (it checks none unless told to).
pub const ACCESS_KEY: &str = "test";
/// Secret key moto accepts.
pub const SECRET_KEY: &str = "test";
/// Region the tests use.
pub const REGION: &str = "us-east-1";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A running moto server with one fresh bucket; killed on drop.
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
    bucket: String,
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts moto and creates a bucket. Panics with the reason on failure.
    pub fn start() -> MotoServer {
        Self::start_with(&[], true)
    }

    /// Starts moto with extra environment variables (for instance
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0`, which makes moto check credentials),
    /// creating the bucket or not.
    pub fn start_with(env: &[(&str, &str)], create_bucket: bool) -> MotoServer {
        let python = ensure_moto();
        let script = workspace().join("tests/support/moto_server.py");
        let mut last_error = String::new();
        // A port picked free may be taken before moto binds it: try again.
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("a temporary log file");
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_PORT", port.to_string())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log file"))
                .stderr(log.reopen().expect("log file"));
            kill_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
            let mut server = MotoServer {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                bucket: String::new(),
                log,
            };
            match server.wait_ready() {
                Ok(()) => {
                    if create_bucket {
                        server.bucket = format!("pipe-test-{port}");
                        let status = server.raw_request("PUT", &format!("/{}", server.bucket));
                        assert!(
                            status == 200,
                            "moto refused to create the bucket (HTTP {status}); log:\n{}",
                            server.log_tail()
                        );
                    }
                    return server;
                }
                Err(e) => last_error = format!("{e}; log:\n{}", server.log_tail()),
            }
        }
        panic!("moto did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("moto exited with {status}"));
            }
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("moto did not listen within 60 s".into())
    }

    /// An unsigned request (moto accepts those unless told otherwise); the
    /// HTTP status.
    fn raw_request(&self, method: &str, path: &str) -> u16 {
        let mut s = TcpStream::connect(self.addr).expect("moto listens");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("request sent");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Every request moto answered so far, as `METHOD PATH?QUERY` (from its
    /// request log, one line per request): what a test counts requests with.
    pub fn requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let start = l.find('"')? + 1;
                let rest = &l[start..];
                let line = strip_ansi(&rest[..rest.find('"')?]);
                let mut parts = line.split(' ');
                let (method, path) = (parts.next()?, parts.next()?);
                parts
                    .next()
                    .filter(|v| v.starts_with("HTTP/"))
                    .map(|_| format!("{method} {path}"))
            })
            .collect()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bucket made for this test (empty if none was made).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://BUCKET/PREFIX` as a store URL.
    pub fn store_url(&self, prefix: &str) -> StoreUrl {
        StoreUrl::S3 {
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
        }
    }

    /// The environment a child process (`pipe`, a helper binary) needs to
    /// reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint().as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The same settings, for a store opened in this process.
    pub fn overrides(&self) -> S3Overrides {
        overrides_for(&self.endpoint())
    }

    /// Grants everyone `s3:GetObject` on the bucket (a bucket policy, as a
    /// public repository on S3 is set up), so clients that send no
    /// credentials (apt-get, dnf) can read it.
    pub fn allow_anonymous_read(&self) {
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}/*"}}]}}"#,
            self.bucket
        );
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(
                self.client()
                    .put_bucket_policy()
                    .bucket(&self.bucket)
                    .policy(policy)
                    .send(),
            )
            .expect("put the bucket policy");
    }

    /// Grants everyone `s3:GetObject` on the bucket's objects and
    /// `s3:ListBucket` on the bucket: what a deploy host reading without
    /// credentials (`pipe --no-sign`) needs, as histories are listed.
    pub fn allow_anonymous_read_and_list(&self) {
        let b = &self.bucket;
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*"}},{{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::{b}"}}]}}"#
        );
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(
                self.client()
                    .put_bucket_policy()
                    .bucket(b)
                    .policy(policy)
                    .send(),
            )
            .expect("put the bucket policy");
    }

    /// A plain SDK client for this server, to look at or tamper with the
    /// bucket behind the store's back.
    pub fn client(&self) -> aws_sdk_s3::Client {
        sdk_client(&self.endpoint())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Store settings for an S3 endpoint with the test credentials.
pub fn overrides_for(endpoint: &str) -> S3Overrides {
    S3Overrides {
        endpoint_url: Some(endpoint.to_string()),
        region: Some(REGION.into()),
        credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        max_attempts: None,
    }
}

/// A plain SDK client for an endpoint, with the test credentials.
pub fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The venv's python with moto in it, installed first if missing.
fn ensure_moto() -> PathBuf {
    let root = workspace();
    let venv = root.join(".pipe-dev/venv");
    let python = venv.join("bin/python");
    if !venv.join("bin/moto_server").exists() {
        let script = root.join("scripts/install-deps.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("moto")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "`{} moto` failed ({}), so the S3 tests cannot run:\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        python.exists(),
        "{} is missing after install-deps",
        python.display()
    );
    python
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Makes the child die with the thread that spawned it, so a test that
/// crashes does not leak servers. (The signal follows the spawning thread,
/// not the process: start servers from the thread that owns them.)
pub fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `s` without the terminal colour codes werkzeug puts in its request log.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
