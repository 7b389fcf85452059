//! The scratch project most end-to-end tests start from, built in one
//! place: a `demo` project (version 1.0.0, `SOURCE_DATE_EPOCH` 1700000000)
//! with one package `demo` shipping `demo.txt`, environments, a signing key,
//! and optionally its store in a moto bucket. Tests say only what differs:
//!
//! ```no_run
//! # use pipe_e2e::fixture::Demo;
//! let p = Demo::new().env("prod", Some("dev")).rsa_key().create();
//! let build = p.release("1.0.1");
//! ```

use crate::cli::Project;
use crate::s3::MotoServer;

/// The public keyring [`Demo::rsa_key`] exports, relative to the project:
/// what apt's gpgv, dnf and rpm are given.
pub const RSA_KEYRING: &str = "release.asc";

/// Which signing key the project gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// None: a test of what happens without one.
    None,
    /// Ed25519 (instant to make).
    Ed25519,
    /// RSA 3072, exported to [`RSA_KEYRING`] (what consumers verify).
    Rsa,
}

/// One `[packages.NAME]` section: one file `NAME.txt` installed as
/// `/usr/share/NAME/NAME.txt`.
#[derive(Debug, Clone)]
struct Package {
    name: String,
    formats: Vec<String>,
}

/// Builder of a `demo` project; [`Demo::create`] writes it.
#[derive(Debug, Clone)]
pub struct Demo {
    envs: Vec<(String, Option<String>)>,
    packages: Vec<Package>,
    store: Vec<String>,
    extra: String,
    files: Vec<(String, String)>,
    key: Key,
    s3: Option<(Vec<(String, String)>, String)>,
}

impl Default for Demo {
    fn default() -> Self {
        Self::new()
    }
}

impl Demo {
    /// Environment `dev`, package `demo` (deb and rpm) whose `demo.txt`
    /// says `one`, an Ed25519 signing key, the local default store.
    pub fn new() -> Self {
        Demo {
            envs: vec![("dev".into(), None)],
            packages: vec![Package {
                name: "demo".into(),
                formats: vec!["deb".into(), "rpm".into()],
            }],
            store: Vec::new(),
            extra: String::new(),
            files: vec![("demo.txt".into(), "one\n".into())],
            key: Key::Ed25519,
            s3: None,
        }
    }

    /// Adds environment `name`, promoted to from `from`.
    pub fn env(mut self, name: &str, from: Option<&str>) -> Self {
        self.envs.push((name.into(), from.map(str::to_string)));
        self
    }

    /// The formats of package `demo` (`["deb"]`, `["deb", "rpm"]`).
    pub fn formats(mut self, formats: &[&str]) -> Self {
        if let Some(demo) = self.packages.first_mut() {
            demo.formats = formats.iter().map(|f| f.to_string()).collect();
        }
        self
    }

    /// Adds package `name` in `formats`, shipping `NAME.txt` (which says
    /// `NAME`).
    pub fn package(mut self, name: &str, formats: &[&str]) -> Self {
        self.packages.push(Package {
            name: name.into(),
            formats: formats.iter().map(|f| f.to_string()).collect(),
        });
        self.files
            .push((format!("{name}.txt"), format!("{name}\n")));
        self
    }

    /// Adds a line to `[store]` (`gc_grace = "3s"`, `url = "..."`).
    pub fn store(mut self, line: &str) -> Self {
        self.store.push(line.into());
        self
    }

    /// Appends TOML after the packages (a `[deploy]` section, say).
    pub fn toml(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self
    }

    /// Writes `contents` to `rel` in the project (over the default one).
    pub fn file(mut self, rel: &str, contents: &str) -> Self {
        self.files.retain(|(r, _)| r != rel);
        self.files.push((rel.into(), contents.into()));
        self
    }

    /// Signs with RSA 3072 and exports the public key to [`RSA_KEYRING`].
    pub fn rsa_key(mut self) -> Self {
        self.key = Key::Rsa;
        self
    }

    /// No signing key.
    pub fn no_key(mut self) -> Self {
        self.key = Key::None;
        self
    }

    /// Keeps the store in `server`'s bucket under `prefix` (`PIPE_STORE`
    /// and the server's credentials in every `pipe` run).
    pub fn s3(mut self, server: &MotoServer, prefix: &str) -> Self {
        self.s3 = Some((server.env(), format!("s3://{}/{prefix}", server.bucket())));
        self
    }

    /// The `pipeline.toml` the project gets.
    pub fn pipeline_toml(&self) -> String {
        let mut t = String::from(
            "[project]\nname = \"demo\"\nversion = \"1.0.0\"\nsource_date_epoch = 1700000000\n",
        );
        if !self.store.is_empty() {
            t.push_str("\n[store]\n");
            for line in &self.store {
                t.push_str(line);
                t.push('\n');
            }
        }
        t.push('\n');
        for (name, from) in &self.envs {
            t.push_str(&format!("[environments.{name}]\n"));
            if let Some(from) = from {
                t.push_str(&format!("from = \"{from}\"\n"));
            }
        }
        for pkg in &self.packages {
            let formats: Vec<String> = pkg.formats.iter().map(|f| format!("\"{f}\"")).collect();
            let mut summary = pkg.name.clone();
            if let Some(first) = summary.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            t.push_str(&format!(
                "\n[packages.{name}]\nsummary = \"{summary}\"\narch = \"all\"\n\
                 maintainer = \"Ops <ops@example.com>\"\nlicense = \"MIT\"\n\
                 formats = [{formats}]\n\
                 files = [{{ src = \"{name}.txt\", dst = \"/usr/share/{name}/{name}.txt\" }}]\n",
                name = pkg.name,
                formats = formats.join(", "),
            ));
        }
        t.push_str(&self.extra);
        t
    }

    /// Writes the project and makes its key.
    pub fn create(self) -> Project {
        let mut p = Project::new();
        if let Some((env, store)) = &self.s3 {
            for (k, v) in env {
                p.env(k, v);
            }
            p.env("PIPE_STORE", store);
        }
        p.write("pipeline.toml", &self.pipeline_toml());
        for (rel, contents) in &self.files {
            p.write(rel, contents);
        }
        match self.key {
            Key::None => {}
            Key::Ed25519 => {
                p.with_signing_key();
            }
            Key::Rsa => {
                p.with_rsa_key();
            }
        }
        p
    }
}

/// A project of `n` packages, each shipping `payload` (a sparse file of
/// `size` bytes, or the given text) as deb and rpm.
pub fn many_packages(n: usize, payload: impl Fn(&Project, &str)) -> Project {
    let p = Project::new();
    let mut toml = String::from(
        r#"[project]
name = "many"
version = "1.0.0"
source_date_epoch = 1700000000
"#,
    );
    for i in 0..n {
        let name = format!("p{i}");
        payload(&p, &format!("{name}.bin"));
        toml.push_str(&format!(
            r#"
[packages.{name}]
summary = "payload {i}"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb", "rpm"]
files = [{{ src = "{name}.bin", dst = "/usr/share/{name}/{name}.bin" }}]
"#
        ));
    }
    p.write("pipeline.toml", &toml);
    p.with_signing_key();
    p
}
