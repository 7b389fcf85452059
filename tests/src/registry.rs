//! A real OCI registry (the CNCF distribution registry, Debian's
//! `docker-registry`) on 127.0.0.1, one per test, with its own config file
//! and filesystem storage in a temp dir (the packaged config listens on
//! every interface and is never used); optionally with htpasswd (bcrypt)
//! basic auth. If the registry cannot start the test fails with the reason.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::consumers::run;
use crate::s3::{free_port, kill_with_parent};

/// A running registry; killed on drop.
pub struct RegistryServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    auth: Option<(String, String)>,
}

impl RegistryServer {
    /// A registry without auth.
    pub fn start() -> RegistryServer {
        Self::start_inner(None)
    }

    /// A registry that asks for `user`/`password` (HTTP basic, htpasswd
    /// with bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> RegistryServer {
        Self::start_inner(Some((user.to_string(), password.to_string())))
    }

    fn start_inner(auth: Option<(String, String)>) -> RegistryServer {
        let dir = tempfile::tempdir().expect("a temp dir for the registry");
        if let Some((user, password)) = &auth {
            run(Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(dir.path().join("htpasswd"))
                .args([user, password]));
        }
        let mut last = String::new();
        for _ in 0..3 {
            let mut server = RegistryServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                auth: auth.clone(),
            };
            // Keep the htpasswd file in the server's own dir.
            if auth.is_some() {
                std::fs::copy(
                    dir.path().join("htpasswd"),
                    server.dir.path().join("htpasswd"),
                )
                .expect("copy htpasswd");
            }
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("docker-registry did not start: {last}");
    }

    fn config(&self) -> PathBuf {
        let d = self.dir.path();
        let auth = if self.auth.is_some() {
            format!(
                "auth:\n  htpasswd:\n    realm: pipe-test\n    path: {}\n",
                d.join("htpasswd").display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{}\n  secret: pipe-test-secret\n{auth}",
            d.join("storage").display(),
            self.port
        );
        let p = d.join("config.yml");
        std::fs::write(&p, config).expect("write the registry config");
        p
    }

    fn launch(&mut self) -> Result<(), String> {
        let config = self.config();
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("/usr/bin/docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| {
            format!("cannot start /usr/bin/docker-registry: {e} (run scripts/install-deps.sh test)")
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .map_err(|e| e.to_string())?
            {
                return Err(format!(
                    "docker-registry exited with {status}; log:\n{}",
                    self.log()
                ));
            }
            if matches!(self.get_status("/v2/"), Some(200 | 401)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "docker-registry did not answer within 30 s; log:\n{}",
            self.log()
        ))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The end of the registry's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where the registry keeps its data.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Stops the registry (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch().expect("docker-registry restarts");
    }

    /// An auth file (containers-auth.json(5)) holding this registry's
    /// credentials, in `dir`.
    pub fn auth_file(&self, dir: &Path) -> PathBuf {
        let (user, password) = self.auth.as_ref().expect("a registry with auth");
        let path = dir.join("auth.json");
        let b64 = base64_encode(format!("{user}:{password}").as_bytes());
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, self.host()),
        )
        .expect("write auth file");
        path
    }

    /// The HTTP status of an anonymous GET, if the registry answers.
    pub fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(self.addr()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host()
        )
        .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        std::str::from_utf8(&buf[..n])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
