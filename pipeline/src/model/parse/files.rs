//! `packages.NAME.files`: each entry's source, destination, mode and
//! config flag, and where a source comes from (the project or a step).

use super::*;

const FILE_KEYS: &[&str] = &["src", "dst", "mode", "config"];

impl Cx<'_> {
    pub(super) fn files(
        &mut self,
        v: &Value<'_>,
        package: &str,
        special_modes: bool,
    ) -> Vec<FileEntry> {
        let what = format!("`packages.{package}.files`");
        let Some(items) = self.array(v, &what) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for item in items {
            let Some(t) = self.table(item, &format!("each entry of {what}")) else {
                continue;
            };
            self.check_keys(t, &format!("an entry of {what}"), FILE_KEYS, None);
            let src = match field(t, "src") {
                Some((_, sv)) => self.nonempty_string(sv, "`src`").and_then(|src| {
                    if let Err((message, _)) = rules::relative_path(&src) {
                        self.error(
                            sv.span(),
                            format!("`src`: {message}"),
                            Some("package files come from the project: `src` is relative to the directory holding pipeline.toml and stays inside it".into()),
                        );
                        return None;
                    }
                    if let Some(step) = self.step_producing(&src) {
                        return Some((src.clone(), src.ends_with('/'), sv.span(), Some(step)));
                    }
                    let is_dir = self.existing_path(&src, sv.span(), "`src`")?;
                    if src.ends_with('/') && !is_dir {
                        self.error(
                            sv.span(),
                            format!("`src` `{src}` ends with `/` but is a file"),
                            Some("drop the trailing `/`".into()),
                        );
                    }
                    Some((src, is_dir, sv.span(), None))
                }),
                None => {
                    self.error(
                        item.span(),
                        format!("an entry of {what} has no `src`"),
                        Some("add `src = \"path/in/project\"`".into()),
                    );
                    None
                }
            };
            let dst = match field(t, "dst") {
                Some((_, dv)) => self.nonempty_string(dv, "`dst`").and_then(|dst| {
                    if let Err(violation) = rules::install_path(&dst) {
                        self.violation(dv.span(), violation);
                        return None;
                    }
                    let norm = dst.trim_end_matches('/').to_string();
                    if let Some(_first) = seen.insert(norm.clone(), dv.span()) {
                        self.error(
                            dv.span(),
                            format!("`{dst}` is installed twice in package `{package}`"),
                            Some(
                                "each destination may appear once; remove one of the entries"
                                    .into(),
                            ),
                        );
                    }
                    Some(dst)
                }),
                None => {
                    self.error(
                        item.span(),
                        format!("an entry of {what} has no `dst`"),
                        Some("add `dst = \"/absolute/path\"`".into()),
                    );
                    None
                }
            };
            let mode = field(t, "mode").and_then(|(_, mv)| match mv.get_ref() {
                DeValue::String(m) => match self.checked(mv.span(), rules::octal_mode(m)) {
                    Some(m) if !special_modes && (m & 0o6000 != 0 || m & 0o002 != 0) => {
                        let bit = if m & 0o4000 != 0 {
                            "setuid"
                        } else if m & 0o2000 != 0 {
                            "setgid"
                        } else {
                            "world-writable"
                        };
                        self.error(
                            mv.span(),
                            format!("mode `{m:04o}` in package `{package}` sets the {bit} bit"),
                            Some(format!(
                                "apt and dnf would install it so for every user: drop the bit, or if it is meant, set `allow_special_modes = true` in [packages.{package}] (deploy then allows it too)"
                            )),
                        );
                        None
                    }
                    other => other,
                },
                DeValue::Integer(i) => {
                    self.error(
                        mv.span(),
                        format!("mode `{}` is a number, not an octal string", i.as_str()),
                        Some(format!(
                            "TOML reads it as decimal; write `mode = \"{:0>4}\"`",
                            i.as_str()
                        )),
                    );
                    None
                }
                other => {
                    self.error(
                        mv.span(),
                        format!("mode must be an octal string, found {}", article(other)),
                        Some("write e.g. `mode = \"0755\"`".into()),
                    );
                    None
                }
            });
            let config = field(t, "config")
                .and_then(|(_, cv)| self.boolean(cv, "`config`"))
                .unwrap_or(false);
            let (Some((src, is_dir, src_span, from_step)), Some(dst)) = (src, dst) else {
                continue;
            };
            // What the build will do with it, now: the same resolution the
            // package stage makes (links leaving the project, names that
            // are not UTF-8 or hold a newline, FIFOs and devices).
            if from_step.is_none()
                && self.inputs == Inputs::Check
                && let Err(e) = stages::tree::resolve(
                    self.dir,
                    &[stages::tree::Mapping {
                        src: src.clone().into(),
                        dst: dst.clone(),
                        mode: None,
                        config: false,
                    }],
                    0,
                )
            {
                self.error(
                    src_span.clone(),
                    format!("`src` `{src}` cannot be packaged: {e}"),
                    Some(
                        "a build would stop here; fix or remove the file, or leave it out of `src`"
                            .into(),
                    ),
                );
            }
            if config && is_dir {
                self.error(
                    src_span.clone(),
                    format!("`{src}` is a directory but is marked `config = true`"),
                    Some(
                        "configuration files are single files: list each one with `config = true`"
                            .into(),
                    ),
                );
            }
            if is_dir && !dst.ends_with('/') {
                self.error(
                    src_span,
                    format!("`src` `{src}` is a directory but `dst` `{dst}` does not end with `/`"),
                    Some(format!(
                        "write `dst = \"{dst}/\"` to install the directory's contents there"
                    )),
                );
            }
            out.push(FileEntry {
                src,
                dst,
                mode,
                config,
                is_dir,
                from_step,
            });
        }
        out
    }
}
