//! The settings sections: `[project]`, `[store]`, `[signing]`,
//! `[registry]`, `[repository]` and `[environments.NAME]`.

use super::*;

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

impl Cx<'_> {
    pub(super) fn project(&mut self, root: &DeTable<'_>) -> Option<Project> {
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

    pub(super) fn version(&mut self, v: &Value<'_>) -> Option<String> {
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

    pub(super) fn store(&mut self, root: &DeTable<'_>) -> StoreSection {
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

    pub(super) fn signing(&mut self, root: &DeTable<'_>) -> Signing {
        let mut out = Signing::default();
        let Some(t) = field(root, "signing").and_then(|(_, v)| self.table(v, "`signing`")) else {
            return out;
        };
        self.check_keys(t, "`[signing]`", SIGNING_KEYS, None);
        out.key = field(t, "key").and_then(|(_, v)| self.nonempty_string(v, "`signing.key`"));
        out
    }

    pub(super) fn registry(&mut self, root: &DeTable<'_>) -> Option<Registry> {
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

    pub(super) fn repository(
        &mut self,
        root: &DeTable<'_>,
        project: Option<&Project>,
    ) -> Repository {
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

    pub(super) fn environments(&mut self, root: &DeTable<'_>) -> Vec<Environment> {
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
            let Some(span) = from_spans.get(&env.name).cloned() else {
                continue;
            };
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
                    let cycle = chain.get(pos..).unwrap_or_default();
                    if cycle.len() > 1 && !cycle.iter().any(|c| reported.contains(c)) {
                        reported.extend(cycle.iter().copied());
                        let Some((first, first_span)) = cycle
                            .iter()
                            .filter_map(|c| Some((*c, from_spans.get(*c)?)))
                            .min_by_key(|(_, span)| span.start)
                        else {
                            continue;
                        };
                        let mut path: Vec<&str> = Vec::new();
                        let mut c = first;
                        loop {
                            path.push(c);
                            let Some(&next) = from_of.get(c) else { break };
                            c = next;
                            if c == first {
                                path.push(c);
                                break;
                            }
                        }
                        self.error(
                            first_span.clone(),
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
