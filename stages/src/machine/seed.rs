//! The cloud-init NoCloud seed: what a machine started from a baked image
//! reads at first boot to get its deploy-time files, so the image itself is
//! never modified per environment.
//!
//! NoCloud (cloud-init's local data source) reads `user-data` and
//! `meta-data` from a filesystem whose volume label is `cidata` (ISO 9660
//! or vfat; the label may also be `CIDATA`). `user-data` here is a
//! `#cloud-config` document with one `write_files` entry per file: `path`,
//! `content` (a YAML double-quoted string for UTF-8 text, else `encoding:
//! b64`), `owner` and `permissions` (an octal string). `meta-data` carries
//! `instance-id` (cloud-init runs its once-per-instance modules again when
//! it changes; pipe derives it from the build and environment) and
//! `local-hostname`.
//!
//! Three shapes of the same two files: a directory (for `seedfrom=` or a
//! hypervisor that shares directories), an ISO (`xorriso`, volume `cidata`,
//! every date `SOURCE_DATE_EPOCH`: byte-identical for equal inputs) and a
//! vfat image (`mkfs.vfat --invariant -i` with a fixed serial, then `mcopy
//! -m` in UTC: also byte-identical).

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::{Tool, Tools, run_captured};
use crate::{Error, Result};

/// A file cloud-init writes at first boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFile {
    /// Absolute path in the machine.
    pub path: String,
    /// Its bytes.
    pub content: Vec<u8>,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
}

/// A seed's contents.
#[derive(Clone, Debug)]
pub struct Seed {
    /// `instance-id`.
    pub instance_id: String,
    /// `local-hostname`, if any.
    pub hostname: Option<String>,
    /// Files to write, in this order.
    pub files: Vec<SeedFile>,
    /// Every date in the ISO and vfat images.
    pub epoch: u64,
}

/// A filesystem image holding the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedImage {
    /// ISO 9660 with Rock Ridge and Joliet, volume `cidata`.
    Iso,
    /// FAT, label `CIDATA`.
    Vfat,
}

impl SeedImage {
    /// The file name pipe gives it.
    pub fn file_name(self) -> &'static str {
        match self {
            SeedImage::Iso => "seed.iso",
            SeedImage::Vfat => "seed.vfat",
        }
    }

    /// The tools it needs.
    pub(crate) fn tools(self) -> &'static [Tool] {
        match self {
            SeedImage::Iso => &[Tool::Xorriso],
            SeedImage::Vfat => &[Tool::MkfsVfat, Tool::Mcopy],
        }
    }
}

/// `user-data`: the cloud-config document.
pub fn user_data(seed: &Seed) -> String {
    let mut out = String::from(
        "#cloud-config\n# written by pipe: the deploy-time files of this environment\n",
    );
    if seed.files.is_empty() {
        out.push_str("write_files: []\n");
        return out;
    }
    out.push_str("write_files:\n");
    for f in &seed.files {
        out.push_str(&format!("- path: {}\n", yaml_string(&f.path)));
        match std::str::from_utf8(&f.content) {
            Ok(text) => out.push_str(&format!("  content: {}\n", yaml_string(text))),
            Err(_) => {
                out.push_str("  encoding: b64\n");
                out.push_str(&format!("  content: {}\n", base64(&f.content)));
            }
        }
        out.push_str(&format!("  owner: {}\n", yaml_string(&f.owner)));
        out.push_str(&format!("  permissions: '{:04o}'\n", f.mode & 0o7777));
    }
    out
}

/// `meta-data`.
pub fn meta_data(seed: &Seed) -> String {
    let mut out = format!("instance-id: {}\n", yaml_string(&seed.instance_id));
    if let Some(h) = &seed.hostname {
        out.push_str(&format!("local-hostname: {}\n", yaml_string(h)));
    }
    out
}

/// Writes `user-data` and `meta-data` into the directory `dir` (created),
/// dated `epoch`; returns their paths.
pub fn write_dir(seed: &Seed, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let mut out = Vec::new();
    for (name, text) in [
        ("user-data", user_data(seed)),
        ("meta-data", meta_data(seed)),
    ] {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| Error::write(&tmp, e))?;
        super::times::set_times(&tmp, seed.epoch as i64).map_err(|e| Error::write(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::write(&p, e))?;
        out.push(p);
    }
    Ok(out)
}

/// Writes the seed image `kind` to `out` from the directory `dir` that
/// [`write_dir`] wrote.
pub fn write_image(seed: &Seed, dir: &Path, kind: SeedImage, out: &Path) -> Result<()> {
    let tools = Tools::find(kind.tools())?;
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let result = match kind {
        SeedImage::Iso => {
            let mut cmd = Command::new(tools.path(Tool::Xorriso));
            cmd.args(["-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o"])
                .arg(&tmp)
                .arg("user-data")
                .arg("meta-data")
                .current_dir(dir)
                .env("SOURCE_DATE_EPOCH", seed.epoch.to_string());
            run(Tool::Xorriso, cmd)
        }
        SeedImage::Vfat => {
            let mut cmd = Command::new(tools.path(Tool::MkfsVfat));
            cmd.args(["-C", "-n", "CIDATA", "-i", "C1DA7A00", "--invariant"])
                .arg(&tmp)
                .arg(vfat_kib(dir)?.to_string())
                .env("SOURCE_DATE_EPOCH", seed.epoch.to_string());
            run(Tool::MkfsVfat, cmd).and_then(|()| {
                let mut cmd = Command::new(tools.path(Tool::Mcopy));
                cmd.arg("-m")
                    .arg("-i")
                    .arg(&tmp)
                    .args(["user-data", "meta-data", "::"])
                    .current_dir(dir)
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .env("TZ", "UTC");
                run(Tool::Mcopy, cmd)
            })
        }
    };
    match result.and_then(|()| std::fs::rename(&tmp, out).map_err(|e| Error::write(out, e))) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The FAT image's size in KiB: the two files plus room, at least 1 MiB.
fn vfat_kib(dir: &Path) -> Result<u64> {
    let mut bytes = 0;
    for name in ["user-data", "meta-data"] {
        let p = dir.join(name);
        bytes += std::fs::metadata(&p).map_err(|e| Error::read(&p, e))?.len();
    }
    Ok((bytes * 2 / 1024 + 512).max(1024))
}

fn run(tool: Tool, cmd: Command) -> Result<()> {
    let (status, output) =
        run_captured(cmd, 16 << 10).map_err(|e| Error::ToolRun { tool, source: e })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::ToolFailed {
            tool,
            status: status.to_string(),
            output,
        })
    }
}

/// A YAML double-quoted scalar: `"`, `\` and control characters escaped
/// (YAML 1.1 and 1.2 read the same escapes); everything else as is.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || c == '\u{7f}'
                || c == '\u{85}'
                || c == '\u{2028}'
                || c == '\u{2029}'
                || c == '\u{feff}' =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding (RFC 4648), as cloud-init reads it.
fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn user_data_escapes_text_and_encodes_binary() {
        let seed = Seed {
            instance_id: "pipe-abc-dev".into(),
            hostname: Some("web".into()),
            files: vec![
                SeedFile {
                    path: "/etc/a b.conf".into(),
                    content: b"x=\"1\"\\\n\ttab\x01".to_vec(),
                    mode: 0o640,
                    owner: "root:root".into(),
                },
                SeedFile {
                    path: "/etc/bin".into(),
                    content: vec![0xff, 0, 1],
                    mode: 0o600,
                    owner: "root:adm".into(),
                },
            ],
            epoch: 0,
        };
        let ud = user_data(&seed);
        assert!(ud.starts_with("#cloud-config\n"));
        assert!(ud.contains("- path: \"/etc/a b.conf\"\n  content: \"x=\\\"1\\\"\\\\\\n\\ttab\\u0001\"\n  owner: \"root:root\"\n  permissions: '0640'\n"), "{ud}");
        assert!(ud.contains("- path: \"/etc/bin\"\n  encoding: b64\n  content: /wAB\n  owner: \"root:adm\"\n  permissions: '0600'\n"), "{ud}");
        assert_eq!(
            meta_data(&seed),
            "instance-id: \"pipe-abc-dev\"\nlocal-hostname: \"web\"\n"
        );
    }
}
