//! `[packages.NAME]`: a package's metadata, relations, architecture,
//! maintainer scripts and documentation files (its file list is in
//! `files`).

use super::*;

const PACKAGE_KEYS: &[&str] = &[
    "summary",
    "description",
    "arch",
    "license",
    "maintainer",
    "depends",
    "pre_depends",
    "recommends",
    "suggests",
    "conflicts",
    "breaks",
    "replaces",
    "provides",
    "section",
    "priority",
    "homepage",
    "compression",
    "formats",
    "files",
    "scripts",
    "allow_special_modes",
    "copyright",
    "license_file",
    "changelog",
    "group",
];
const PRIORITIES: &[&str] = &["required", "important", "standard", "optional", "extra"];
const SCRIPT_KEYS: &[&str] = &["preinst", "postinst", "prerm", "postrm"];

impl Cx<'_> {
    pub(super) fn packages(&mut self, root: &DeTable<'_>) -> BTreeMap<String, Package> {
        let mut out = BTreeMap::new();
        let Some(t) = field(root, "packages").and_then(|(_, v)| self.table(v, "`packages`")) else {
            return out;
        };
        for (key, v) in t {
            if let Some(p) = self.package(key, v) {
                out.insert(p.name.clone(), p);
            }
        }
        out
    }

    pub(super) fn package(&mut self, key: &Key<'_>, v: &Value<'_>) -> Option<Package> {
        let name = key.get_ref().to_string();
        let section = format!("`[packages.{name}]`");
        let t = self.table(v, &format!("`packages.{name}`"))?;
        self.check_keys(t, &section, PACKAGE_KEYS, None);
        let at = |k: &str| format!("`packages.{name}.{k}`");

        let formats = match field(t, "formats") {
            None => vec![PackageFormat::Deb, PackageFormat::Rpm],
            Some((_, fv)) => {
                let mut formats = Vec::new();
                for (f, span) in self.string_list(fv, &at("formats")) {
                    match f.as_str() {
                        "deb" => formats.push(PackageFormat::Deb),
                        "rpm" => formats.push(PackageFormat::Rpm),
                        other => {
                            let hint = did_you_mean(other, ["deb", "rpm"])
                                .map_or("package formats are `deb` and `rpm`".into(), |s| {
                                    format!("did you mean `{s}`?")
                                });
                            self.error(
                                span,
                                format!("unknown package format `{other}`"),
                                Some(hint),
                            );
                        }
                    }
                }
                formats.sort();
                formats.dedup();
                if formats.is_empty() {
                    self.error(
                        fv.span(),
                        format!("{} lists no format", at("formats")),
                        Some(
                            "remove `formats` to build both, or list `\"deb\"` and/or `\"rpm\"`"
                                .into(),
                        ),
                    );
                }
                formats
            }
        };
        let mut name_ok = true;
        if formats.contains(&PackageFormat::Deb)
            && let Err(violation) = rules::debian_package_name(&name)
        {
            self.violation(key.span(), violation);
            name_ok = false;
        }
        if formats.contains(&PackageFormat::Rpm)
            && name_ok
            && let Err(violation) = rules::rpm_package_name(&name)
        {
            self.violation(key.span(), violation);
        }

        let summary = match field(t, "summary") {
            Some((_, sv)) => {
                let s = self.nonempty_string(sv, &at("summary"));
                if let Some(s) = &s
                    && s.contains('\n')
                {
                    self.error(
                        sv.span(),
                        format!("{} spans several lines", at("summary")),
                        Some("keep the summary to one line; put the rest in `description`".into()),
                    );
                }
                s
            }
            None => {
                self.error(
                    v.span(),
                    format!("missing `summary` in {section}"),
                    Some("add `summary = \"one line about the package\"`".into()),
                );
                None
            }
        };
        let description =
            field(t, "description").and_then(|(_, v)| self.string(v, &at("description")));
        let license =
            field(t, "license").and_then(|(_, v)| self.nonempty_string(v, &at("license")));
        if field(t, "maintainer").is_none() && formats.contains(&PackageFormat::Deb) {
            self.error(
                v.span(),
                format!("missing `maintainer` in {section}"),
                Some(
                    "Debian packages name their maintainer: add `maintainer = \"Name <email>\"`"
                        .into(),
                ),
            );
        }
        let maintainer = field(t, "maintainer").and_then(|(_, mv)| {
            let m = self.nonempty_string(mv, &at("maintainer"))?;
            if !(m.contains('<') && m.ends_with('>')) {
                self.error(
                    mv.span(),
                    format!("{} `{m}` has no email address", at("maintainer")),
                    Some("write `Name <email@example.com>`".into()),
                );
            }
            Some(m)
        });
        let relation = |cx: &mut Self, k: &str| -> Vec<String> {
            field(t, k)
                .map(|(_, dv)| cx.checked_list(dv, &at(k), rules::relation))
                .unwrap_or_default()
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        };
        let relations = Relations {
            depends: relation(self, "depends"),
            pre_depends: relation(self, "pre_depends"),
            recommends: relation(self, "recommends"),
            suggests: relation(self, "suggests"),
            conflicts: relation(self, "conflicts"),
            breaks: relation(self, "breaks"),
            replaces: relation(self, "replaces"),
            provides: relation(self, "provides"),
        };
        let deb_section =
            field(t, "section").and_then(|(_, v)| self.nonempty_string(v, &at("section")));
        let priority = field(t, "priority").and_then(|(_, pv)| {
            let p = self.nonempty_string(pv, &at("priority"))?;
            if PRIORITIES.contains(&p.as_str()) {
                return Some(p);
            }
            let hint = did_you_mean(&p, PRIORITIES.iter().copied()).map_or_else(
                || format!("Debian priorities: {}", PRIORITIES.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            self.error(pv.span(), format!("unknown priority `{p}`"), Some(hint));
            None
        });
        let homepage = field(t, "homepage").and_then(|(_, hv)| {
            let h = self.nonempty_string(hv, &at("homepage"))?;
            if !(h.starts_with("https://") || h.starts_with("http://")) {
                self.error(
                    hv.span(),
                    format!("homepage `{h}` is not an http(s) URL"),
                    Some("write the full URL, e.g. `https://example.com`".into()),
                );
            }
            Some(h)
        });
        let compression = match field(t, "compression") {
            None => Compression::default(),
            Some((_, cv)) => match self.nonempty_string(cv, &at("compression")).as_deref() {
                Some("xz") => Compression::Xz,
                Some("gzip") => Compression::Gzip,
                Some("zstd") => Compression::Zstd,
                Some("none") => Compression::None,
                Some(other) => {
                    let hint = did_you_mean(other, ["xz", "gzip", "zstd", "none"]).map_or(
                        "compressions are `xz` (default), `gzip`, `zstd` and `none`".into(),
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.error(
                        cv.span(),
                        format!("unknown compression `{other}`"),
                        Some(hint),
                    );
                    Compression::default()
                }
                None => Compression::default(),
            },
        };
        let arch = self
            .required(
                t,
                "arch",
                v.span(),
                &section,
                "add `arch = \"amd64\"`, or `arch = \"all\"` for architecture-independent packages",
            )
            .and_then(|av| self.arch(av, &at("arch")));
        let allow_special_modes = field(t, "allow_special_modes")
            .and_then(|(_, v)| self.boolean(v, &at("allow_special_modes")))
            .unwrap_or(false);
        let files = match field(t, "files") {
            Some((_, fv)) => self.files(fv, &name, allow_special_modes),
            None => Vec::new(),
        };
        let scripts = match field(t, "scripts") {
            Some((_, sv)) => self.scripts(sv, &name),
            None => Scripts::default(),
        };
        let (docs, group) = self.package_docs(t, &name, maintainer.as_deref());
        Some(Package {
            name,
            summary: summary?,
            description,
            arch: arch?,
            license,
            maintainer,
            relations,
            section: deb_section,
            priority,
            homepage,
            compression,
            formats,
            files,
            scripts,
            allow_special_modes,
            docs,
            group,
        })
    }

    pub(super) fn arch(&mut self, v: &Value<'_>, what: &str) -> Option<Arch> {
        let a = self.nonempty_string(v, what)?;
        if let Some(arch) = Arch::ALL.iter().find(|x| x.deb() == a) {
            return Some(*arch);
        }
        let hint = if let Some(arch) = Arch::ALL.iter().find(|x| x.rpm() == a) {
            format!(
                "pipe uses Debian's names: write `{}`; the rpm gets `{a}`",
                arch.deb()
            )
        } else {
            format!(
                "known architectures: {}",
                Arch::ALL
                    .iter()
                    .map(|x| format!("`{}`", x.deb()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.error(v.span(), format!("unknown architecture `{a}`"), Some(hint));
        None
    }

    pub(super) fn scripts(&mut self, v: &Value<'_>, package: &str) -> Scripts {
        let mut out = Scripts::default();
        let Some(t) = self.table(v, &format!("`packages.{package}.scripts`")) else {
            return out;
        };
        self.check_keys(
            t,
            &format!("`packages.{package}.scripts`"),
            SCRIPT_KEYS,
            None,
        );
        for (key, sv) in t {
            let slot = match key.get_ref().as_ref() {
                "preinst" => &mut out.preinst,
                "postinst" => &mut out.postinst,
                "prerm" => &mut out.prerm,
                "postrm" => &mut out.postrm,
                _ => continue,
            };
            let what = format!("`{}` script", key.get_ref());
            *slot = self.existing_file(sv, &what);
        }
        out
    }

    /// The documentation settings of a package: `copyright`, `license_file`,
    /// `changelog`, and the rpm `group`.
    pub(super) fn package_docs(
        &mut self,
        t: &DeTable<'_>,
        package: &str,
        maintainer: Option<&str>,
    ) -> (PackageDocs, Option<String>) {
        let at = |k: &str| format!("`packages.{package}.{k}`");
        let one_line = |cx: &mut Self, k: &str| -> Option<String> {
            let (_, v) = field(t, k)?;
            let s = cx.nonempty_string(v, &at(k))?;
            if s.contains(['\n', '\r']) {
                cx.error(
                    v.span(),
                    format!("{} spans several lines", at(k)),
                    Some("write it on one line".into()),
                );
                return None;
            }
            Some(s.trim().to_string())
        };
        let copyright = one_line(self, "copyright");
        let group = one_line(self, "group");
        let license_file = field(t, "license_file").and_then(|(_, v)| {
            let rel = self.existing_file(v, "`license_file`")?;
            if self.inputs != Inputs::Check {
                return Some(rel);
            }
            self.text_file(&rel, v.span(), "`license_file`")?;
            Some(rel)
        });
        let changelog = field(t, "changelog").and_then(|(_, v)| {
            let rel = self.existing_file(v, "`changelog`")?;
            if self.inputs != Inputs::Check {
                return Some(rel);
            }
            let text = self.text_file(&rel, v.span(), "`changelog`")?;
            let version = self.version.clone()?;
            let author = maintainer.unwrap_or(package);
            if let Err(e) = stages::docs::Changelog::parse(package, &version, author, &text) {
                let place = if e.line == 0 {
                    format!("`{rel}`")
                } else {
                    format!("`{rel}` line {}", e.line)
                };
                self.error(
                    v.span(),
                    format!("changelog {place}: {}", e.message),
                    Some(
                        "write Debian's format (deb-changelog(5)) or `## VERSION - YYYY-MM-DD` headings with `- change` items, newest first; see the `pipeline.toml` reference in README.md"
                            .into(),
                    ),
                );
                return None;
            }
            Some(rel)
        });
        (
            PackageDocs {
                copyright,
                license_file,
                changelog,
            },
            group,
        )
    }

    /// The UTF-8 text of the project file `rel`, or an error at `span`.
    pub(super) fn text_file(&mut self, rel: &str, span: Span, what: &str) -> Option<String> {
        match std::fs::read(self.dir.join(rel)) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    self.error(
                        span,
                        format!("{what} `{rel}` is not UTF-8 text"),
                        Some("package metadata is text: convert the file to UTF-8".into()),
                    );
                    None
                }
            },
            Err(e) => {
                self.error(span, format!("{what} `{rel}` cannot be read: {e}"), None);
                None
            }
        }
    }
}
