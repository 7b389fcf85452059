//! `[deploy]`: the packages a deploy installs, its `after` command and the
//! templates of `files` (checked with the one template parser,
//! [`crate::template`]; which names exist is only known at deploy time:
//! `--set`, `PIPE_VAR_*`).

use super::*;

const DEPLOY_KEYS: &[&str] = &["files", "packages", "after"];

impl Cx<'_> {
    pub(super) fn deploy(
        &mut self,
        root: &DeTable<'_>,
        refs: &mut Vec<(String, Span, String)>,
    ) -> Deploy {
        let mut out = Deploy::default();
        let Some(t) = field(root, "deploy").and_then(|(_, v)| self.table(v, "`deploy`")) else {
            return out;
        };
        self.check_keys(t, "`[deploy]`", DEPLOY_KEYS, None);
        if let Some((_, pv)) = field(t, "packages") {
            let list = self.string_list(pv, "`deploy.packages`");
            if matches!(pv.get_ref(), DeValue::Array(a) if a.is_empty()) {
                self.error(
                    pv.span(),
                    "`deploy.packages` is empty, so a deploy would install nothing",
                    Some(
                        "name the packages to deploy, or remove the key to deploy every package"
                            .into(),
                    ),
                );
            }
            let mut seen = BTreeSet::new();
            for (name, span) in list {
                if !seen.insert(name.clone()) {
                    self.error(
                        span,
                        format!("package `{name}` is listed twice in `deploy.packages`"),
                        Some("remove the second mention".into()),
                    );
                    continue;
                }
                refs.push((name.clone(), span, "`[deploy]`".into()));
                out.packages.push(name);
            }
        }
        if let Some((_, av)) = field(t, "after") {
            out.after = self.nonempty_string(av, "`deploy.after`");
        }
        let Some(ft) = field(t, "files").and_then(|(_, v)| self.table(v, "`deploy.files`")) else {
            return out;
        };
        for (key, v) in ft {
            let path = key.get_ref().to_string();
            if let Err(violation) = rules::install_path(&path) {
                self.violation(key.span(), violation);
                continue;
            }
            if path.ends_with('/') {
                self.error(
                    key.span(),
                    format!("deploy file `{path}` names a directory"),
                    Some("give the path of the file to write".into()),
                );
                continue;
            }
            let Some(text) = self.string(v, &format!("`deploy.files.\"{path}\"`")) else {
                continue;
            };
            if let Err((message, hint)) = crate::template::parse(&text).map_err(|e| e.explain()) {
                self.error(
                    v.span(),
                    format!("template for `{path}`: {message}"),
                    Some(hint),
                );
                continue;
            }
            out.files.insert(path, text);
        }
        out
    }
}
