//! Registry credentials, found the way OCI tools find them.
//!
//! In order, the first that has an entry for the registry wins:
//!
//! 1. `PIPE_REGISTRY_USERNAME` and `PIPE_REGISTRY_PASSWORD` (CI secrets);
//! 2. `REGISTRY_AUTH_FILE` (podman, skopeo, buildah);
//! 3. `${XDG_RUNTIME_DIR}/containers/auth.json` (podman login's default);
//! 4. `~/.config/containers/auth.json`;
//! 5. `${DOCKER_CONFIG:-~/.docker}/config.json` (docker login).
//!
//! An auth file maps a registry (`host[:port]`, optionally with a
//! repository path or an `https://` prefix, as older docker wrote it) to
//! `{"auth": base64("user:password")}`; the most specific key that matches
//! the repository wins, as containers-auth.json(5) says. Credential helpers
//! (`credsStore`, `credHelpers`) are not run: a registry that only has one is
//! reported as having no credentials, with a hint. Files are capped at
//! [`MAX_AUTH_FILE`] bytes.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Largest auth file read.
pub(crate) const MAX_AUTH_FILE: u64 = 1 << 20;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// None: anonymous access.
    Anonymous,
    /// A user name and password (or token), sent as HTTP basic auth or
    /// exchanged for a bearer token, as the registry asks.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
        /// Where they were found (for messages; never the secret).
        source: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic {
                username, source, ..
            } => write!(f, "Basic({username} from {source})"),
        }
    }
}

impl Credentials {
    /// Where the credentials came from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "no credentials".into(),
            Credentials::Basic {
                username, source, ..
            } => format!("user `{username}` from {source}"),
        }
    }
}

/// Where to look, so tests can point at their own files.
#[derive(Clone, Debug, Default)]
pub struct CredentialSources {
    /// `PIPE_REGISTRY_USERNAME`/`PIPE_REGISTRY_PASSWORD`.
    pub env: Option<(String, String)>,
    /// Auth files, in order.
    pub files: Vec<PathBuf>,
}

impl CredentialSources {
    /// The sources of the process environment.
    pub fn from_env() -> CredentialSources {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let env = match (var("PIPE_REGISTRY_USERNAME"), var("PIPE_REGISTRY_PASSWORD")) {
            (Some(u), Some(p)) => Some((u, p)),
            _ => None,
        };
        let home = var("HOME").map(PathBuf::from);
        let mut files = Vec::new();
        if let Some(f) = var("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(f));
        }
        if let Some(d) = var("XDG_RUNTIME_DIR") {
            files.push(Path::new(&d).join("containers/auth.json"));
        }
        if let Some(h) = &home {
            files.push(h.join(".config/containers/auth.json"));
        }
        match var("DOCKER_CONFIG") {
            Some(d) => files.push(Path::new(&d).join("config.json")),
            None => {
                if let Some(h) = &home {
                    files.push(h.join(".docker/config.json"));
                }
            }
        }
        CredentialSources { env, files }
    }

    /// The credentials for `registry` (`host[:port]`) and `repository`.
    /// Unreadable or malformed files are skipped with a warning in the log:
    /// another tool's broken file must not stop a push that needs none.
    pub(crate) fn find(&self, registry: &str, repository: &str) -> Credentials {
        if let Some((u, p)) = &self.env {
            return Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
                source: "PIPE_REGISTRY_USERNAME/PIPE_REGISTRY_PASSWORD".into(),
            };
        }
        for f in &self.files {
            match read_auth_file(f, registry, repository) {
                Ok(Some((username, password))) => {
                    return Credentials::Basic {
                        username,
                        password,
                        source: format!("`{}`", f.display()),
                    };
                }
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(file = %f.display(), %reason, "skipping unreadable auth file")
                }
            }
        }
        Credentials::Anonymous
    }
}

fn read_auth_file(
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<(String, String)>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if meta.len() > MAX_AUTH_FILE {
        return Err(format!("{} bytes, more than {MAX_AUTH_FILE}", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    // The most specific key: `host/ns/repo` before `host/ns` before `host`.
    let full = format!("{registry}/{repository}");
    let mut best: Option<(usize, &serde_json::Value)> = None;
    for (key, entry) in auths {
        let k = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let k = k.strip_suffix("/v1").or(k.strip_suffix("/v2")).unwrap_or(k);
        let matches = k == registry || full == k || full.starts_with(&format!("{k}/"));
        if matches && best.is_none_or(|(len, _)| k.len() > len) {
            best = Some((k.len(), entry));
        }
    }
    let Some((_, entry)) = best else {
        return Ok(None);
    };
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("`auth` of `{registry}` is not base64: {e}"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| format!("`auth` of `{registry}` is not UTF-8"))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| format!("`auth` of `{registry}` is not `user:password`"))?;
        return Ok(Some((u.to_string(), p.to_string())));
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(u), Some(p)) => Ok(Some((u.to_string(), p.to_string()))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn the_most_specific_entry_of_the_first_file_that_has_one_wins() {
        let d = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let podman = file(
            d.path(),
            "auth.json",
            &format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}},"127.0.0.1:5000/team/app":{{"auth":"{}"}}}}}}"#,
                b64("host:h"),
                b64("repo:r")
            ),
        );
        let docker = file(
            d.path(),
            "config.json",
            &format!(
                r#"{{"auths":{{"https://other:443":{{"auth":"{}"}}}}}}"#,
                b64("d:pw:with:colons")
            ),
        );
        let missing = d.path().join("missing.json");
        let broken = file(d.path(), "broken.json", "{not json");
        let s = CredentialSources {
            env: None,
            files: vec![missing, broken, podman, docker],
        };
        let user = |c: Credentials| match c {
            Credentials::Basic {
                username, password, ..
            } => format!("{username}:{password}"),
            Credentials::Anonymous => "anonymous".into(),
        };
        assert_eq!(user(s.find("127.0.0.1:5000", "team/app")), "repo:r");
        assert_eq!(user(s.find("127.0.0.1:5000", "team/application")), "host:h");
        assert_eq!(user(s.find("other:443", "x")), "d:pw:with:colons");
        assert_eq!(user(s.find("127.0.0.1:5001", "x")), "anonymous");
        let env = CredentialSources {
            env: Some(("e".into(), "p".into())),
            files: s.files.clone(),
        };
        assert_eq!(user(env.find("127.0.0.1:5000", "team/app")), "e:p");
    }
}
