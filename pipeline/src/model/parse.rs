//! From TOML text to a validated [`Pipeline`], collecting every problem.
//!
//! The document is parsed with spans (`toml::de::DeTable`) and walked by hand
//! rather than through serde: serde stops at the first error, and the user
//! wants all of them, each pointing at its own line.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::rules::{self, did_you_mean};
use super::*;

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<Cow<'i, str>>;

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
const PROJECT_KEYS: &[&str] = &["name", "version", "source_date_epoch"];
const STORE_KEYS: &[&str] = &[
    "url",
    "connect_timeout",
    "request_timeout",
    "timeout",
    "attempts",
    "no_sign",
    "gc_grace",
    "gc_keep_history",
];
const SIGNING_KEYS: &[&str] = &["key"];
const REGISTRY_KEYS: &[&str] = &["url", "insecure"];
const REPOSITORY_KEYS: &[&str] = &[
    "origin",
    "label",
    "valid_for",
    "grace",
    "head_valid_for",
    "architectures",
];
const ENVIRONMENT_KEYS: &[&str] = &["from"];
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
const STEP_KEYS: &[&str] = &["run", "inputs", "outputs", "env"];
const PRIORITIES: &[&str] = &["required", "important", "standard", "optional", "extra"];
const FILE_KEYS: &[&str] = &["src", "dst", "mode", "config"];
const SCRIPT_KEYS: &[&str] = &["preinst", "postinst", "prerm", "postrm"];
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
const DEPLOY_KEYS: &[&str] = &["files", "packages", "after"];

pub(super) fn parse(
    file: &Path,
    dir: &Path,
    source: &str,
    inputs: Inputs,
) -> Result<Pipeline, Diagnostics> {
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
    let packages = cx.packages(&root);
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
        if !declared.contains(&name) {
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
    /// Whether input files are looked at ([`Inputs::Skip`]: only
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
        if self.inputs == Inputs::Skip {
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

    fn project(&mut self, root: &DeTable<'_>) -> Option<Project> {
        let Some((_, v)) = field(root, "project") else {
            self.error(
                0..0,
                "missing `[project]` section",
                Some("add `[project]` with `name` and `version`".into()),
            );
            return None;
        };
        let t = self.table(v, "`project`")?;
        self.check_keys(t, "`[project]`", PROJECT_KEYS, None);
        let name = match field(t, "name") {
            Some((_, v)) => self.nonempty_string(v, "`project.name`").and_then(|n| {
                let verdict = rules::simple_name("project", &n);
                self.checked(v.span(), verdict).map(|()| n)
            }),
            None => {
                self.error(
                    v.span(),
                    "missing `name` in `[project]`",
                    Some("add `name = \"...\"`".into()),
                );
                None
            }
        };
        let version = match field(t, "version") {
            Some((_, v)) => self.version(v),
            None => {
                self.error(
                    v.span(),
                    "missing `version` in `[project]`",
                    Some("add `version = \"0.1.0\"`".into()),
                );
                None
            }
        };
        let source_date_epoch = field(t, "source_date_epoch").and_then(|(_, v)| {
            let n = self.integer(v, "`project.source_date_epoch`")?;
            match u64::try_from(n) {
                Ok(n) if n <= rules::MAX_EPOCH => Some(n),
                Ok(_) => {
                    self.error(
                        v.span(),
                        format!(
                            "`project.source_date_epoch` {n} is after {} (2106-02-07), the last date an rpm can carry",
                            rules::MAX_EPOCH
                        ),
                        Some("give seconds since 1970-01-01 UTC".into()),
                    );
                    None
                }
                Err(_) => {
                    self.error(
                        v.span(),
                        "`project.source_date_epoch` is negative",
                        Some("give seconds since 1970-01-01 UTC".into()),
                    );
                    None
                }
            }
        });
        Some(Project {
            name: name?,
            version: version?,
            source_date_epoch,
        })
    }

    fn version(&mut self, v: &Value<'_>) -> Option<String> {
        let DeValue::String(s) = v.get_ref() else {
            self.error(
                v.span(),
                format!(
                    "`project.version` must be a string, found {}",
                    article(v.get_ref())
                ),
                Some("put the version in double quotes, e.g. `version = \"1.2.0\"`".into()),
            );
            return None;
        };
        self.checked(v.span(), rules::version(s))
            .map(|()| s.to_string())
    }

    fn store(&mut self, root: &DeTable<'_>) -> StoreSection {
        let mut out = StoreSection::default();
        let Some(t) = field(root, "store").and_then(|(_, v)| self.table(v, "`store`")) else {
            return out;
        };
        self.check_keys(t, "`[store]`", STORE_KEYS, None);
        if let Some((_, v)) = field(t, "url")
            && let Some(url) = self.nonempty_string(v, "`store.url`")
        {
            if let Err(violation) = store_url(&url, self.dir) {
                self.violation(v.span(), violation);
            }
            out.url = Some(url);
        }
        let net = &mut out.network;
        for (key, slot) in [
            ("connect_timeout", &mut net.connect_timeout),
            ("request_timeout", &mut net.request_timeout),
            ("timeout", &mut net.timeout),
        ] {
            let Some((_, v)) = field(t, key) else {
                continue;
            };
            let what = format!("`store.{key}`");
            if let Some(s) = self.string(v, &what) {
                match rules::duration(&s) {
                    Ok(d) => *slot = Some(d),
                    Err((message, hint)) => {
                        self.error(v.span(), format!("{what}: {message}"), Some(hint))
                    }
                }
            }
        }
        if let Some((_, v)) = field(t, "attempts")
            && let Some(n) = self.integer(v, "`store.attempts`")
        {
            match u32::try_from(n) {
                Ok(n @ 1..=100) => net.attempts = Some(n),
                _ => self.error(
                    v.span(),
                    format!("`store.attempts` is {n}, outside 1 to 100"),
                    Some("the first attempt counts: `1` means no retry".into()),
                ),
            }
        }
        if let Some((_, v)) = field(t, "no_sign")
            && let Some(b) = self.boolean(v, "`store.no_sign`")
        {
            net.no_sign = b;
        }
        if let Some((_, v)) = field(t, "gc_grace")
            && let Some(s) = self.string(v, "`store.gc_grace`")
        {
            match rules::duration(&s) {
                Ok(d) => out.gc_grace = Some(d),
                Err((message, hint)) => {
                    self.error(v.span(), format!("`store.gc_grace`: {message}"), Some(hint))
                }
            }
        }
        if let Some((_, v)) = field(t, "gc_keep_history")
            && let Some(n) = self.integer(v, "`store.gc_keep_history`")
        {
            match u32::try_from(n) {
                Ok(n @ 1..) => out.gc_keep_history = Some(n),
                _ => self.error(
                    v.span(),
                    format!("`store.gc_keep_history` is {n}, not a positive count"),
                    Some(
                        "the newest entry of each environment is always kept: `1` keeps only it"
                            .into(),
                    ),
                ),
            }
        }
        out
    }

    fn signing(&mut self, root: &DeTable<'_>) -> Signing {
        let mut out = Signing::default();
        let Some(t) = field(root, "signing").and_then(|(_, v)| self.table(v, "`signing`")) else {
            return out;
        };
        self.check_keys(t, "`[signing]`", SIGNING_KEYS, None);
        out.key = field(t, "key").and_then(|(_, v)| self.nonempty_string(v, "`signing.key`"));
        out
    }

    fn registry(&mut self, root: &DeTable<'_>) -> Option<Registry> {
        let (_, v) = field(root, "registry")?;
        let t = self.table(v, "`registry`")?;
        self.check_keys(t, "`[registry]`", REGISTRY_KEYS, None);
        let insecure = field(t, "insecure")
            .and_then(|(_, v)| self.boolean(v, "`registry.insecure`"))
            .unwrap_or(false);
        let Some((_, url_v)) = field(t, "url") else {
            self.error(
                v.span(),
                "missing `url` in `[registry]`",
                Some("add `url = \"host:port/name\"`".into()),
            );
            return None;
        };
        let url = self.nonempty_string(url_v, "`registry.url`")?;
        if let Some((scheme, _)) = url.split_once("://") {
            self.error(
                url_v.span(),
                format!("`registry.url` has a scheme (`{scheme}://`)"),
                Some("write `host[:port]/repository`; set `insecure = true` for plain HTTP".into()),
            );
            return None;
        }
        if !url.contains('/') {
            self.error(
                url_v.span(),
                format!("`registry.url` `{url}` names no repository"),
                Some("write `host[:port]/repository`, e.g. `127.0.0.1:5000/hello`".into()),
            );
            return None;
        }
        Some(Registry { url, insecure })
    }

    fn repository(&mut self, root: &DeTable<'_>, project: Option<&Project>) -> Repository {
        let name = project.map_or_else(|| "pipe".to_string(), |p| p.name.clone());
        let mut repo = Repository {
            origin: name.clone(),
            label: name,
            valid_for: std::time::Duration::from_secs(7 * 86_400),
            grace: std::time::Duration::from_secs(3600),
            head_valid_for: std::time::Duration::from_secs(7 * 86_400),
            architectures: Arch::ALL.into_iter().filter(|a| *a != Arch::All).collect(),
        };
        let Some(t) = field(root, "repository").and_then(|(_, v)| self.table(v, "`repository`"))
        else {
            return repo;
        };
        self.check_keys(t, "`[repository]`", REPOSITORY_KEYS, None);
        for (key, slot) in [("origin", &mut repo.origin), ("label", &mut repo.label)] {
            let Some((_, v)) = field(t, key) else {
                continue;
            };
            let what = format!("`repository.{key}`");
            if let Some(s) = self.nonempty_string(v, &what) {
                if s.contains(['\n', '\r']) {
                    self.error(
                        v.span(),
                        format!("{what} spans lines"),
                        Some("apt fields are one line".into()),
                    );
                } else {
                    *slot = s;
                }
            }
        }
        if let Some((_, v)) = field(t, "architectures") {
            let mut archs = Vec::new();
            for (name, span) in self.string_list(v, "`repository.architectures`") {
                match Arch::ALL.iter().find(|a| a.deb() == name && **a != Arch::All) {
                    Some(a) if !archs.contains(a) => archs.push(*a),
                    Some(_) => {}
                    None => self.error(
                        span,
                        format!("`repository.architectures`: `{name}` is not an architecture apt knows here"),
                        Some(format!(
                            "use Debian's names: {}",
                            Arch::ALL
                                .iter()
                                .filter(|a| **a != Arch::All)
                                .map(|a| format!("`{}`", a.deb()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ),
                }
            }
            if archs.is_empty() {
                self.error(
                    v.span(),
                    "`repository.architectures` is empty",
                    Some("list at least one, e.g. `[\"amd64\", \"arm64\"]`".into()),
                );
            } else {
                repo.architectures = archs;
            }
        }
        for (key, slot) in [
            ("valid_for", &mut repo.valid_for),
            ("grace", &mut repo.grace),
            ("head_valid_for", &mut repo.head_valid_for),
        ] {
            let Some((_, v)) = field(t, key) else {
                continue;
            };
            let what = format!("`repository.{key}`");
            if let Some(s) = self.string(v, &what) {
                match rules::duration(&s) {
                    Ok(d) => *slot = d,
                    Err((message, hint)) => {
                        self.error(v.span(), format!("{what}: {message}"), Some(hint))
                    }
                }
            }
        }
        repo
    }

    fn environments(&mut self, root: &DeTable<'_>) -> Vec<Environment> {
        let Some(t) =
            field(root, "environments").and_then(|(_, v)| self.table(v, "`environments`"))
        else {
            return Vec::new();
        };
        let mut envs = Vec::new();
        let mut from_spans = BTreeMap::new();
        let mut ordered: Vec<_> = t.iter().collect();
        ordered.sort_by_key(|(k, _)| k.span().start);
        for (key, v) in ordered {
            let name = key.get_ref().to_string();
            if let Err(violation) = rules::environment_name(&name) {
                self.violation(key.span(), violation);
            }
            let Some(et) = self.table(v, &format!("`environments.{name}`")) else {
                continue;
            };
            self.check_keys(
                et,
                &format!("`[environments.{name}]`"),
                ENVIRONMENT_KEYS,
                None,
            );
            let from = field(et, "from").and_then(|(_, fv)| {
                let f = self.nonempty_string(fv, &format!("`environments.{name}.from`"))?;
                from_spans.insert(name.clone(), fv.span());
                Some(f)
            });
            envs.push(Environment { name, from });
        }
        let names: BTreeSet<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        for env in &envs {
            let Some(from) = &env.from else { continue };
            let span = from_spans[&env.name].clone();
            if !names.contains(from.as_str()) {
                let hint = match did_you_mean(from, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "declare `[environments.{from}]`, or name one of: {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(
                    span,
                    format!(
                        "environment `{}` is promoted from `{from}`, which is not declared",
                        env.name
                    ),
                    Some(hint),
                );
            } else if from == &env.name {
                self.error(
                    span,
                    format!("environment `{}` is promoted from itself", env.name),
                    Some("remove `from`, or name the environment builds come from".into()),
                );
            }
        }
        // Each environment has at most one `from`, so a cycle is found by
        // walking the chain; it is reported once, at its first member.
        let from_of: BTreeMap<&str, &str> = envs
            .iter()
            .filter_map(|e| Some((e.name.as_str(), e.from.as_deref()?)))
            .collect();
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        for env in &envs {
            let mut chain = vec![env.name.as_str()];
            let mut at = env.name.as_str();
            while let Some(&next) = from_of.get(at) {
                if next == at || !names.contains(next) {
                    break;
                }
                if let Some(pos) = chain.iter().position(|c| *c == next) {
                    let cycle = &chain[pos..];
                    if cycle.len() > 1 && !cycle.iter().any(|c| reported.contains(c)) {
                        reported.extend(cycle.iter().copied());
                        let first = cycle.iter().min_by_key(|c| from_spans[**c].start).unwrap();
                        let mut path: Vec<&str> = Vec::new();
                        let mut c = *first;
                        loop {
                            path.push(c);
                            c = from_of[c];
                            if c == *first {
                                path.push(c);
                                break;
                            }
                        }
                        self.error(
                            from_spans[*first].clone(),
                            format!("environments form a promotion cycle: {}", path.join(" ← ")),
                            Some("a build could never enter the cycle: remove one `from` so the path has a start".into()),
                        );
                    }
                    break;
                }
                chain.push(next);
                at = next;
            }
        }
        envs
    }

    /// A step input glob that matches no file, and cannot match another
    /// step's outputs either, fails the build; say so now, at the glob.
    fn check_step_globs(&mut self) {
        if self.inputs == Inputs::Skip {
            return;
        }
        let globs = std::mem::take(&mut self.step_globs);
        let mut files: Option<Vec<String>> = None;
        for (step, glob, span) in globs {
            let Ok(m) = globset::GlobBuilder::new(&glob)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
            else {
                self.error(
                    span,
                    format!("input `{glob}` of step `{step}` is not a valid glob"),
                    Some("`*` matches within a directory, `**` across directories".into()),
                );
                continue;
            };
            let from_a_step = self.step_outputs.iter().any(|(out, s)| {
                s != &step && (m.is_match(out) || glob.starts_with(&format!("{out}/")))
            });
            if from_a_step {
                continue;
            }
            let own: Vec<&str> = self
                .step_outputs
                .iter()
                .filter(|(_, s)| *s == step)
                .map(|(o, _)| o.as_str())
                .collect();
            let files = files.get_or_insert_with(|| project_files(self.dir));
            let matched = files.iter().any(|f| {
                m.is_match(f)
                    && !own
                        .iter()
                        .any(|o| f == o || f.starts_with(&format!("{o}/")))
            });
            if !matched {
                self.error(
                    span,
                    format!("input `{glob}` of step `{step}` matches no file"),
                    Some(format!(
                        "globs are relative to the directory holding pipeline.toml ({}); a build would stop here",
                        shown_dir(self.dir)
                    )),
                );
            }
        }
    }

    /// The step whose declared output is `src` or contains it.
    fn step_producing(&self, src: &str) -> Option<String> {
        let src = src.trim_end_matches('/');
        self.step_outputs
            .iter()
            .find(|(out, _)| {
                src == out
                    || src
                        .strip_prefix(out.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .map(|(_, step)| step.clone())
    }

    fn steps(&mut self, root: &DeTable<'_>) -> BTreeMap<String, Step> {
        let mut out = BTreeMap::new();
        let Some(t) = field(root, "steps").and_then(|(_, v)| self.table(v, "`steps`")) else {
            return out;
        };
        for (key, v) in t {
            let name = key.get_ref().to_string();
            if let Err(violation) = rules::simple_name("step", &name) {
                self.violation(key.span(), violation);
            }
            let Some(st) = self.table(v, &format!("`steps.{name}`")) else {
                continue;
            };
            self.check_keys(st, &format!("`[steps.{name}]`"), STEP_KEYS, None);
            let at = |k: &str| format!("`steps.{name}.{k}`");
            let run = self
                .required(
                    st,
                    "run",
                    v.span(),
                    &format!("`[steps.{name}]`"),
                    "add the command to run, e.g. `run = \"make\"`",
                )
                .and_then(|rv| self.nonempty_string(rv, &at("run")));
            let inputs: Vec<String> = field(st, "inputs")
                .map(|(_, iv)| self.checked_list(iv, &at("inputs"), rules::relative_path))
                .unwrap_or_default()
                .into_iter()
                .map(|(g, span)| {
                    self.step_globs.push((name.clone(), g.clone(), span));
                    g
                })
                .collect();
            let outputs: Vec<String> = field(st, "outputs")
                .map(|(_, ov)| self.checked_list(ov, &at("outputs"), rules::relative_path))
                .unwrap_or_default()
                .into_iter()
                .map(|(o, _)| o)
                .collect();
            if outputs.is_empty() {
                self.error(v.span(), format!("`[steps.{name}]` declares no `outputs`"),
                    Some("list the files the step writes, e.g. `outputs = [\"build/hello\"]`: only declared outputs are cached and packaged".into()));
            }
            let mut env = BTreeMap::new();
            if let Some((_, ev)) = field(st, "env")
                && let Some(et) = self.table(ev, &at("env"))
            {
                for (k, val) in et {
                    if let Some(s) =
                        self.string(val, &format!("`steps.{name}.env.{}`", k.get_ref()))
                    {
                        env.insert(k.get_ref().to_string(), s);
                    }
                }
            }
            if let Some(run) = run {
                out.insert(
                    name.clone(),
                    Step {
                        name,
                        run,
                        inputs,
                        outputs,
                        env,
                    },
                );
            }
        }
        out
    }

    fn packages(&mut self, root: &DeTable<'_>) -> BTreeMap<String, Package> {
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

    fn package(&mut self, key: &Key<'_>, v: &Value<'_>) -> Option<Package> {
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

    fn arch(&mut self, v: &Value<'_>, what: &str) -> Option<Arch> {
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

    fn files(&mut self, v: &Value<'_>, package: &str, special_modes: bool) -> Vec<FileEntry> {
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

    fn scripts(&mut self, v: &Value<'_>, package: &str) -> Scripts {
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

    fn images(
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

    fn machines(
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

    fn package_list(
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

    fn deploy(&mut self, root: &DeTable<'_>, refs: &mut Vec<(String, Span, String)>) -> Deploy {
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

/// Checks `{{ name }}` placeholders are closed and name an identifier. Which
/// names exist is only known at deploy time (`--set`, `PIPE_VAR_*`).
/// Every file under `dir` (relative, `/`-separated), as a step's inputs see
/// them: pipe's own state and git's left out.
fn project_files(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(e.depth() == 1 && (name == ".pipe" || name == ".git"))
        })
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_type().is_dir())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()?
                .to_str()
                .map(str::to_string)
        })
        .collect()
}

/// The one store-URL parser decides ([`crate::store::StoreUrl::parse`]).
fn store_url(url: &str, dir: &Path) -> Result<(), rules::Violation> {
    match crate::store::StoreUrl::parse(url, dir) {
        Ok(_) => Ok(()),
        Err(Error::StoreUrl { reason, .. }) => Err((
            format!("`{url}` is not a store URL: {reason}"),
            "use a directory path (default `.pipe/store`) or `s3://bucket/prefix`".into(),
        )),
        Err(e) => Err((e.to_string(), String::new())),
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

/// The documentation settings of a package: `copyright`, `license_file`,
/// `changelog`, and the rpm `group`.
impl Cx<'_> {
    fn package_docs(
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
            if self.inputs == Inputs::Skip {
                return Some(rel);
            }
            self.text_file(&rel, v.span(), "`license_file`")?;
            Some(rel)
        });
        let changelog = field(t, "changelog").and_then(|(_, v)| {
            let rel = self.existing_file(v, "`changelog`")?;
            if self.inputs == Inputs::Skip {
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
    fn text_file(&mut self, rel: &str, span: Span, what: &str) -> Option<String> {
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
