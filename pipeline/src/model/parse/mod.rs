//! From TOML text to a validated [`Pipeline`], collecting every problem.
//!
//! The document is parsed with spans (`toml::de::DeTable`) and walked by hand
//! rather than through serde: serde stops at the first error, and the user
//! wants all of them, each pointing at its own line.
//!
//! This module holds the walk's state ([`Cx`]), the typed readers of TOML
//! values every section uses, and the order sections are read in; each group
//! of sections has its own file: `sections` (project, store, signing,
//! registry, repository, environments), `steps`, `packages` (with `files`,
//! a package's file list), `images` (images and machines) and `deploy`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::rules::{self, did_you_mean};
use super::*;

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<Cow<'i, str>>;

mod deploy;
mod files;
mod images;
mod packages;
mod sections;
mod skim;
mod steps;

const TOP_KEYS: &[&str] = &[
    "project",
    "store",
    "signing",
    "registry",
    "repository",
    "environments",
    "steps",
    "packages",
    "images",
    "machines",
    "deploy",
];

pub(super) fn parse(
    file: &Path,
    dir: &Path,
    source: &str,
    inputs: Inputs,
) -> Result<Pipeline, Diagnostics> {
    // The package tables left out, each line where it was.
    let skimmed;
    let source = if inputs == Inputs::StoreOnly {
        skimmed = skim::without_tables(source, "packages");
        &*skimmed
    } else {
        source
    };
    let mut cx = Cx {
        diags: Diagnostics::new(file, source),
        dir,
        inputs,
        step_outputs: Vec::new(),
        version: None,
        step_globs: Vec::new(),
        sections: BTreeMap::new(),
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim();
            cx.error(
                span,
                format!("invalid TOML: {}", message.trim_end_matches('.')),
                Some("fix the syntax here; see the `pipeline.toml` reference in README.md".into()),
            );
        }
        return Err(cx.finish());
    }
    let root = root.into_inner();
    cx.check_keys(&root, "the top level", TOP_KEYS, None);

    let project = cx.project(&root);
    cx.version = project.as_ref().map(|p| p.version.clone());
    let store = cx.store(&root);
    let signing = cx.signing(&root);
    let registry = cx.registry(&root);
    let environments = cx.environments(&root);
    let steps = cx.steps(&root);
    cx.step_outputs = steps
        .values()
        .flat_map(|s| {
            s.outputs
                .iter()
                .map(|o| (o.trim_end_matches('/').to_string(), s.name.clone()))
        })
        .collect();
    cx.check_step_globs();
    let packages = if inputs == Inputs::StoreOnly {
        BTreeMap::new()
    } else {
        cx.packages(&root)
    };
    // Names as declared, even where the package itself has errors, so a
    // broken package does not also make every reference to it an error.
    let declared: BTreeSet<String> = field(&root, "packages")
        .and_then(|(_, v)| v.get_ref().as_table())
        .map(|t| t.keys().map(|k| k.get_ref().to_string()).collect())
        .unwrap_or_default();
    let mut package_refs = Vec::new();
    let images = cx.images(&root, &mut package_refs);
    let machines = cx.machines(&root, &mut package_refs);
    let deploy = cx.deploy(&root, &mut package_refs);
    let repository = cx.repository(&root, project.as_ref());

    for (name, span, owner) in package_refs {
        // Without the package tables, what is declared is unknown.
        if inputs != Inputs::StoreOnly && !declared.contains(&name) {
            let hint = match did_you_mean(&name, declared.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if declared.is_empty() => {
                    "no packages are declared: add a `[packages.NAME]` section".into()
                }
                None => format!(
                    "declared packages: {}",
                    declared
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            cx.error(
                span,
                format!("{owner} names package `{name}`, which is not declared"),
                Some(hint),
            );
        }
    }

    match project {
        Some(project) if cx.diags.is_empty() => Ok(Pipeline {
            file: file.to_path_buf(),
            dir: dir.to_path_buf(),
            project,
            store,
            signing,
            registry,
            repository,
            environments,
            steps,
            packages,
            images,
            machines,
            deploy,
            sections: cx.sections,
        }),
        _ => Err(cx.finish()),
    }
}

struct Cx<'a> {
    diags: Diagnostics,
    dir: &'a Path,
    /// Whether input files are looked at ([`Inputs::StoreOnly`]: only
    /// `pipeline.toml` is read).
    inputs: Inputs,
    /// Every declared step output (without a trailing `/`) and its step:
    /// package files may come from them, so they need not exist before a build.
    step_outputs: Vec<(String, String)>,
    /// `project.version`, once read: a changelog's newest entry must name it.
    version: Option<String>,
    /// Every step input glob: step, glob, where it is written.
    step_globs: Vec<(String, String, Span)>,
    /// Where `[images.NAME]` and `[machines.NAME]` are declared.
    sections: BTreeMap<String, Position>,
}

impl Cx<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        self.diags.error(span, message, hint);
    }

    /// The value of a rule's check, or `None` with the violation recorded at
    /// `span`: the one place a rule's verdict becomes a diagnostic.
    fn checked<T>(&mut self, span: Span, verdict: Result<T, rules::Violation>) -> Option<T> {
        match verdict {
            Ok(v) => Some(v),
            Err(violation) => {
                self.violation(span, violation);
                None
            }
        }
    }

    /// `key` of table `t`, or `None` with "missing `key` in SECTION"
    /// recorded at `at` (the section's span) and `hint`.
    fn required<'t, 'i>(
        &mut self,
        t: &'t DeTable<'i>,
        key: &str,
        at: Span,
        section: &str,
        hint: &str,
    ) -> Option<&'t Value<'i>> {
        match field(t, key) {
            Some((_, v)) => Some(v),
            None => {
                self.error(
                    at,
                    format!("missing `{key}` in {section}"),
                    Some(hint.to_string()),
                );
                None
            }
        }
    }

    /// A list of strings, each checked by `rule`; those that fail are
    /// recorded and left out.
    fn checked_list(
        &mut self,
        v: &Value<'_>,
        what: &str,
        rule: impl Fn(&str) -> Result<(), rules::Violation>,
    ) -> Vec<(String, Span)> {
        self.string_list(v, what)
            .into_iter()
            .filter(|(item, span)| self.checked(span.clone(), rule(item)).is_some())
            .collect()
    }

    fn violation(&mut self, span: Span, (message, hint): rules::Violation) {
        self.error(span, message, Some(hint));
    }

    fn finish(mut self) -> Diagnostics {
        self.diags.sort();
        self.diags
    }

    /// Reports every key of `table` that is not in `allowed`.
    fn check_keys(
        &mut self,
        table: &DeTable<'_>,
        section: &str,
        allowed: &[&str],
        extra_hint: Option<&str>,
    ) {
        for key in table.keys() {
            if allowed.contains(&key.get_ref().as_ref()) {
                continue;
            }
            let hint = match did_you_mean(key.get_ref(), allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => match extra_hint {
                    Some(h) => h.to_string(),
                    None => format!(
                        "known keys here: {}",
                        allowed
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            };
            self.error(
                key.span(),
                format!("unknown key `{}` in {section}", key.get_ref()),
                Some(hint),
            );
        }
    }

    fn table<'t, 'i>(&mut self, v: &'t Value<'i>, what: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error(
                    v.span(),
                    format!("{what} must be a table, found {}", article(other)),
                    Some(format!(
                        "write it as a `[{}]` section",
                        what.trim_matches('`')
                    )),
                );
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    v.span(),
                    format!("{what} must be a string, found {}", article(other)),
                    Some("put the value in double quotes".into()),
                );
                None
            }
        }
    }

    fn nonempty_string(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let s = self.string(v, what)?;
        if s.trim().is_empty() {
            self.error(
                v.span(),
                format!("{what} is empty"),
                Some("give it a value".into()),
            );
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, v: &Value<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.error(
                    v.span(),
                    format!("{what} must be `true` or `false`, found {}", article(other)),
                    Some("write `true` or `false` without quotes".into()),
                );
                None
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, what: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => {
                let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
                let digits = digits
                    .trim_start_matches('+')
                    .trim_start_matches("0x")
                    .trim_start_matches("0o")
                    .trim_start_matches("0b");
                match i64::from_str_radix(digits, i.radix()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.error(v.span(), format!("{what} is out of range"), None);
                        None
                    }
                }
            }
            other => {
                self.error(
                    v.span(),
                    format!("{what} must be an integer, found {}", article(other)),
                    Some("write the number without quotes".into()),
                );
                None
            }
        }
    }

    fn array<'t, 'i>(&mut self, v: &'t Value<'i>, what: &str) -> Option<&'t [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                self.error(
                    v.span(),
                    format!("{what} must be an array, found {}", article(other)),
                    Some("write a list in brackets, e.g. `[\"a\", \"b\"]`".into()),
                );
                None
            }
        }
    }

    fn string_list(&mut self, v: &Value<'_>, what: &str) -> Vec<(String, Span)> {
        let Some(items) = self.array(v, what) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let s = self.nonempty_string(item, &format!("each entry of {what}"))?;
                Some((s, item.span()))
            })
            .collect()
    }

    /// A path relative to the project directory that must exist. Returns
    /// whether it is a directory.
    /// Without [`Inputs::Check`] nothing is looked at: what `rel` declares
    /// (a trailing `/` for a directory).
    fn existing_path(&mut self, rel: &str, span: Span, what: &str) -> Option<bool> {
        if self.inputs != Inputs::Check {
            return Some(rel.ends_with('/'));
        }
        let path = self.dir.join(rel);
        match std::fs::metadata(&path) {
            Ok(m) => Some(m.is_dir()),
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_string()
                } else {
                    format!("cannot be read: {e}")
                };
                self.error(
                    span,
                    format!("{what} `{rel}` {why}"),
                    Some(format!(
                        "paths are relative to the directory holding pipeline.toml ({})",
                        shown_dir(self.dir)
                    )),
                );
                None
            }
        }
    }

    fn existing_file(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let rel = self.nonempty_string(v, what)?;
        match self.existing_path(&rel, v.span(), what)? {
            false => Some(rel),
            true => {
                self.error(
                    v.span(),
                    format!("{what} `{rel}` is a directory, not a file"),
                    Some("name the file itself".into()),
                );
                None
            }
        }
    }
}

fn field<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> Option<(&'t Key<'i>, &'t Value<'i>)> {
    t.iter().find(|(k, _)| k.get_ref() == key)
}

fn article(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn shown_dir(dir: &Path) -> String {
    let s = dir.display().to_string();
    if s.is_empty() { ".".into() } else { s }
}
