//! `pipe init`: a commented starter `pipeline.toml`, never overwriting.

use std::io::Write;

use pipeline::model::PIPELINE_FILE;
use pipeline::{Error, Result};
use serde_json::json;

use crate::Context;

pub fn run(cx: &Context) -> Result<()> {
    let dir = &cx.dir;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file = dir.join(PIPELINE_FILE);
    let name = project_name(dir);
    // `create_new` makes "never overwrite" hold even against a racing writer.
    let mut out = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Usage {
                message: format!("`{}` already exists", file.display()),
                hint: Some(
                    "pipe init never overwrites; edit the file, or move it away first".into(),
                ),
            });
        }
        Err(e) => return Err(Error::io(&file, e)),
    };
    out.write_all(starter(&name).as_bytes())
        .map_err(|e| Error::io(&file, e))?;

    let gitignore = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&gitignore) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&gitignore, e)),
    };
    let has = |names: [&str; 4]| existing.lines().any(|l| names.contains(&l.trim()));
    let pipe_ignored = has([".pipe", ".pipe/", "/.pipe", "/.pipe/"]);
    // The secret signing key is written to `keys/` (`pipe keys generate`):
    // never committed by a first `git add .`.
    let keys_ignored = has(["keys", "keys/", "/keys", "/keys/"]);
    let ignored = pipe_ignored && keys_ignored;
    if !ignored {
        let mut add = String::new();
        if !existing.is_empty() && !existing.ends_with('\n') {
            add.push('\n');
        }
        if !pipe_ignored {
            add.push_str("# pipe's local store and caches\n.pipe/\n");
        }
        if !keys_ignored {
            add.push_str("# the project's secret signing key: never in git\n/keys/\n");
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&gitignore)
            .and_then(|mut f| f.write_all(add.as_bytes()))
            .map_err(|e| Error::io(&gitignore, e))?;
    }

    cx.printer.result(
        || {
            let mut s = format!("wrote {} for project `{name}`\n", file.display());
            if !ignored {
                s.push_str(&format!(
                    "added `.pipe/` and `/keys/` (the secret signing key) to {}\n",
                    gitignore.display()
                ));
            }
            s.push_str("next: declare a package in it, then run `pipe validate`");
            s
        },
        || json!({ "ok": true, "pipeline": file, "project": name, "gitignore_updated": !ignored }),
    );
    Ok(())
}

/// A valid project name from the directory name.
fn project_name(dir: &std::path::Path) -> String {
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    if cleaned.is_empty() {
        "app".into()
    } else {
        cleaned
    }
}

fn starter(name: &str) -> String {
    format!(
        r#"# pipeline.toml: what pipe builds, where it keeps it, and where it deploys it.
# The full reference is in pipe's README ("pipeline.toml reference").
# Paths are relative to this file's directory.

[project]
name = "{name}"
version = "0.1.0"                   # one version for every artifact; use `~` for pre-releases (1.0.0~rc1)
# source_date_epoch = 1700000000    # else $SOURCE_DATE_EPOCH, else the last git commit time

[store]
url = ".pipe/store"                 # or "s3://bucket/prefix"; --store and $PIPE_STORE override
# S3 only (flags of the same names override):
# request_timeout = "60s"           # one attempt waiting for its answer (an upload's body included)
# timeout = "3m"                    # one store operation, every retry included
# no_sign = true                    # read a bucket that allows anonymous reads, with no credentials

[signing]
key = "keys/release.key"            # OpenPGP secret key; $PIPE_SIGNING_KEY overrides

# The apt suite (dists/ENV) and yum repository (yum/ENV) of each environment,
# written into the store on every promotion:
# [repository]
# origin = "{name}"                 # apt Origin and Label (default: the project name)
# valid_for = "7d"                  # Valid-Until; re-sign with `pipe refresh` before then
# grace = "1h"                      # how long replaced index files stay for clients mid-update

# Environments, and the path a build takes through them.
[environments.dev]
[environments.staging]
from = "dev"                        # only builds that were in dev may be promoted here
[environments.prod]
from = "staging"

# A package, built as .deb and .rpm unless `formats` says otherwise:
#
# [packages.{name}]
# summary = "One line about it"
# description = "Longer text."
# arch = "amd64"                    # "all" for architecture-independent; rpm gets x86_64 / noarch
# license = "MIT"
# license_file = "LICENSE"          # full text for the copyright file (/usr/share/doc/NAME/copyright)
# maintainer = "Ops <ops@example.com>"
# homepage = "https://example.com"  # the rpm's URL, the copyright file's Source
# changelog = "CHANGELOG.md"        # `## VERSION - YYYY-MM-DD` + `- change`, or Debian's format
# depends = ["libc6 (>= 2.36)"]
# files = [
#   {{ src = "bin/{name}", dst = "/usr/bin/{name}", mode = "0755" }},
#   {{ src = "etc/{name}.conf", dst = "/etc/{name}/{name}.conf", config = true }},
# ]
# scripts = {{ postinst = "scripts/postinst.sh" }}

# Files written at deploy time, per environment:
#
# [deploy]
# files = {{ "/etc/{name}/env.conf" = "environment={{{{ env }}}}\n" }}
"#
    )
}
