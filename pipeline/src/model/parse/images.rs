//! `[images.NAME]` and `[machines.NAME]`, and the package lists both name.

use super::*;

const IMAGE_KEYS: &[&str] = &[
    "base",
    "packages",
    "entrypoint",
    "cmd",
    "env",
    "expose",
    "workdir",
    "user",
    "labels",
    "compression",
];
const MACHINE_KEYS: &[&str] = &["base", "packages", "post_install", "size", "formats"];

impl Cx<'_> {
    pub(super) fn images(
        &mut self,
        root: &DeTable<'_>,
        refs: &mut Vec<(String, Span, String)>,
    ) -> BTreeMap<String, Image> {
        let mut out = BTreeMap::new();
        let Some(t) = field(root, "images").and_then(|(_, v)| self.table(v, "`images`")) else {
            return out;
        };
        for (key, v) in t {
            let name = key.get_ref().to_string();
            let at = self.diags.position(&key.span());
            self.sections.insert(format!("images.{name}"), at);
            if let Err(violation) = rules::image_name(&name) {
                self.violation(key.span(), violation);
            }
            let Some(it) = self.table(v, &format!("`images.{name}`")) else {
                continue;
            };
            self.check_keys(it, &format!("`[images.{name}]`"), IMAGE_KEYS, None);
            let at = |k: &str| format!("`images.{name}.{k}`");
            let base = match field(it, "base") {
                None => Some(ImageBase::Scratch),
                Some((_, bv)) => self.nonempty_string(bv, &at("base")).and_then(|b| {
                    if b == "scratch" {
                        return Some(ImageBase::Scratch);
                    }
                    let (path, docker) = if let Some(p) = b.strip_prefix("oci-archive:") {
                        (p, false)
                    } else if let Some(p) = b.strip_prefix("docker-archive:") {
                        (p, true)
                    } else {
                        self.error(bv.span(), format!("unknown image base `{b}`"),
                            Some("write `\"scratch\"`, `\"oci-archive:path/to/base.tar\"` or `\"docker-archive:path/to/saved.tar\"`".into()));
                        return None;
                    };
                    let span = bv.span();
                    match self.existing_path(path, span.clone(), "base image")? {
                        false if docker => Some(ImageBase::DockerArchive(path.to_string())),
                        false => Some(ImageBase::OciArchive(path.to_string())),
                        true => {
                            self.error(span, format!("base image `{path}` is a directory"),
                                Some("give an image tarball (`skopeo copy ... oci-archive:FILE`, or `docker save -o FILE`)".into()));
                            None
                        }
                    }
                }),
            };
            let packages = self.package_list(it, &name, "image", refs);
            let entrypoint = field(it, "entrypoint")
                .map(|(_, ev)| {
                    self.string_list(ev, &at("entrypoint"))
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                })
                .unwrap_or_default();
            let mut env = BTreeMap::new();
            if let Some((_, ev)) = field(it, "env")
                && let Some(et) = self.table(ev, &at("env"))
            {
                for (k, val) in et {
                    let var = k.get_ref().to_string();
                    let valid = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        self.error(
                            k.span(),
                            format!("`{var}` is not a valid environment variable name"),
                            Some("use letters, digits and `_`, not starting with a digit".into()),
                        );
                    }
                    if let Some(s) = self.string(val, &format!("`images.{name}.env.{var}`")) {
                        env.insert(var, s);
                    }
                }
            }
            let mut expose = Vec::new();
            if let Some((_, xv)) = field(it, "expose") {
                for port in self.array(xv, &at("expose")).unwrap_or_default() {
                    if let Some(n) = self.integer(port, "each port of `expose`") {
                        match u16::try_from(n) {
                            Ok(p) if p > 0 => expose.push(p),
                            _ => self.error(
                                port.span(),
                                format!("port {n} is out of range"),
                                Some("ports are 1 to 65535".into()),
                            ),
                        }
                    }
                }
            }
            let cmd = field(it, "cmd")
                .map(|(_, cv)| {
                    self.string_list(cv, &at("cmd"))
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                })
                .unwrap_or_default();
            let workdir = field(it, "workdir").and_then(|(_, wv)| {
                let w = self.nonempty_string(wv, &at("workdir"))?;
                if !w.starts_with('/') {
                    self.error(
                        wv.span(),
                        format!("`workdir` `{w}` is not an absolute path"),
                        Some("start it with `/`".into()),
                    );
                }
                Some(w)
            });
            let user = field(it, "user").and_then(|(_, uv)| self.nonempty_string(uv, &at("user")));
            let mut labels = BTreeMap::new();
            if let Some((_, lv)) = field(it, "labels")
                && let Some(lt) = self.table(lv, &at("labels"))
            {
                for (k, val) in lt {
                    let key = k.get_ref().to_string();
                    if let Some(s) = self.string(val, &format!("`images.{name}.labels.{key}`")) {
                        labels.insert(key, s);
                    }
                }
            }
            let compression = match field(it, "compression") {
                None => Some(ImageCompression::Gzip),
                Some((_, cv)) => match self.nonempty_string(cv, &at("compression")).as_deref() {
                    Some("gzip") => Some(ImageCompression::Gzip),
                    Some("zstd") => Some(ImageCompression::Zstd),
                    Some(other) => {
                        self.error(
                            cv.span(),
                            format!("unknown layer compression `{other}`"),
                            Some("write `\"gzip\"` (the default) or `\"zstd\"`".into()),
                        );
                        None
                    }
                    None => None,
                },
            };
            if let (Some(base), Some(compression)) = (base, compression) {
                out.insert(
                    name.clone(),
                    Image {
                        name,
                        base,
                        packages,
                        entrypoint,
                        env,
                        expose,
                        cmd,
                        workdir,
                        user,
                        labels,
                        compression,
                    },
                );
            }
        }
        out
    }

    pub(super) fn machines(
        &mut self,
        root: &DeTable<'_>,
        refs: &mut Vec<(String, Span, String)>,
    ) -> BTreeMap<String, Machine> {
        let mut out = BTreeMap::new();
        let Some(t) = field(root, "machines").and_then(|(_, v)| self.table(v, "`machines`")) else {
            return out;
        };
        for (key, v) in t {
            let name = key.get_ref().to_string();
            let at = self.diags.position(&key.span());
            self.sections.insert(format!("machines.{name}"), at);
            if let Err(violation) = rules::simple_name("machine", &name) {
                self.violation(key.span(), violation);
            }
            let Some(mt) = self.table(v, &format!("`machines.{name}`")) else {
                continue;
            };
            self.check_keys(mt, &format!("`[machines.{name}]`"), MACHINE_KEYS, None);
            let at = |k: &str| format!("`machines.{name}.{k}`");
            let base = match field(mt, "base") {
                None => {
                    self.error(v.span(), format!("missing `base` in `[machines.{name}]`"),
                        Some("add `base = \"rootfs:path/to/rootfs.tar.gz\"`".into()));
                    None
                }
                Some((_, bv)) => self.nonempty_string(bv, &at("base")).and_then(|b| {
                    let Some(path) = b.strip_prefix("rootfs:") else {
                        self.error(bv.span(), format!("unknown machine base `{b}`"),
                            Some("write `\"rootfs:path/to/rootfs.tar.gz\"`, a root filesystem tarball".into()));
                        return None;
                    };
                    match self.existing_path(path, bv.span(), "root filesystem")? {
                        false => Some(path.to_string()),
                        true => {
                            self.error(bv.span(), format!("root filesystem `{path}` is a directory"),
                                Some("give a tarball of the root filesystem".into()));
                            None
                        }
                    }
                }),
            };
            let packages = self.package_list(mt, &name, "machine", refs);
            let post_install = field(mt, "post_install")
                .and_then(|(_, pv)| self.existing_file(pv, "post-install script"));
            let size = match field(mt, "size") {
                None => {
                    self.error(
                        v.span(),
                        format!("missing `size` in `[machines.{name}]`"),
                        Some("add the disk size, e.g. `size = \"2G\"`".into()),
                    );
                    None
                }
                Some((_, sv)) => match sv.get_ref() {
                    DeValue::String(s) => {
                        match rules::size(s) {
                            Ok(n) if n >= 1 << 20 => Some(n),
                            Ok(_) => {
                                self.error(sv.span(), format!("disk size `{s}` is below 1 MiB"),
                                Some("a bootable disk needs at least a few hundred MiB, e.g. `512M`".into()));
                                None
                            }
                            Err(violation) => {
                                self.violation(sv.span(), violation);
                                None
                            }
                        }
                    }
                    other => {
                        self.error(
                            sv.span(),
                            format!(
                                "{} must be a string such as `\"512M\"`, found {}",
                                at("size"),
                                article(other)
                            ),
                            Some("write the size with a unit, in quotes: `size = \"512M\"`".into()),
                        );
                        None
                    }
                },
            };
            let formats = match field(mt, "formats") {
                None => vec![DiskFormat::Raw, DiskFormat::Qcow2],
                Some((_, fv)) => {
                    let mut formats = Vec::new();
                    for (f, span) in self.string_list(fv, &at("formats")) {
                        match f.as_str() {
                            "raw" => formats.push(DiskFormat::Raw),
                            "qcow2" => formats.push(DiskFormat::Qcow2),
                            other => {
                                let hint = did_you_mean(other, ["raw", "qcow2"])
                                    .map_or("disk formats are `raw` and `qcow2`".into(), |s| {
                                        format!("did you mean `{s}`?")
                                    });
                                self.error(
                                    span,
                                    format!("unknown disk format `{other}`"),
                                    Some(hint),
                                );
                            }
                        }
                    }
                    formats.sort();
                    formats.dedup();
                    formats
                }
            };
            if let (Some(base_rootfs), Some(size)) = (base, size) {
                out.insert(
                    name.clone(),
                    Machine {
                        name,
                        base_rootfs,
                        packages,
                        post_install,
                        size,
                        formats,
                    },
                );
            }
        }
        out
    }

    pub(super) fn package_list(
        &mut self,
        t: &DeTable<'_>,
        owner: &str,
        kind: &str,
        refs: &mut Vec<(String, Span, String)>,
    ) -> Vec<String> {
        let Some((_, pv)) = field(t, "packages") else {
            return Vec::new();
        };
        let list = self.string_list(pv, &format!("`{kind}s.{owner}.packages`"));
        for (p, span) in &list {
            refs.push((p.clone(), span.clone(), format!("{kind} `{owner}`")));
        }
        list.into_iter().map(|(p, _)| p).collect()
    }
}
