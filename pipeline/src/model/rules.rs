//! The naming and versioning rules of the formats pipe writes: what dpkg, rpm
//! and OCI registries accept, and version strings that sort the way their
//! author expects in both dpkg and rpm.
//!
//! Each check returns `Err((message, hint))` so the parser can place it.

/// A rule violation: what is wrong, and what to write instead.
pub(crate) type Violation = (String, String);

/// Debian policy 5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two
/// characters; starting with a letter or digit.
pub(crate) fn debian_package_name(name: &str) -> Result<(), Violation> {
    let ok = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        return Ok(());
    }
    Err((
        format!("`{name}` is not a valid Debian package name"),
        "Debian package names are at least two characters: lowercase letters, digits, `+`, `-` and `.`, starting with a letter or digit".into(),
    ))
}

/// RPM: letters, digits and `-._+`, not starting with `-` or `.`; no
/// whitespace, no macro or path characters.
pub(crate) fn rpm_package_name(name: &str) -> Result<(), Violation> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._+".contains(c));
    if ok {
        return Ok(());
    }
    Err((
        format!("`{name}` is not a valid RPM package name"),
        "RPM package names use letters, digits, `-`, `.`, `_` and `+`, starting with a letter, digit or `_`".into(),
    ))
}

/// Pre-release words that, written without `~`, make a pre-release sort
/// after the release it precedes in both dpkg and rpm.
const PRERELEASE_WORDS: [&str; 8] = [
    "alpha",
    "beta",
    "rc",
    "pre",
    "preview",
    "dev",
    "snapshot",
    "milestone",
];

/// A version that dpkg and rpm both accept and order the way it reads.
///
/// It is written unchanged as the upstream part of the Debian version and as
/// the RPM `Version`, so it has to obey the stricter rule of each: it starts
/// with a digit (dpkg), has no `-` (dpkg's revision separator, forbidden in
/// an RPM Version), no `:` (an epoch), and no `_` (dpkg rejects it).
pub(crate) fn version(v: &str) -> Result<(), Violation> {
    if v.is_empty() {
        return Err((
            "the version is empty".into(),
            "write a version such as `1.2.0`".into(),
        ));
    }
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return Err((
            format!("version `{v}` does not start with a digit"),
            "dpkg requires versions to start with a digit: drop the prefix (`v1.2.0` becomes `1.2.0`)".into(),
        ));
    }
    if let Some(bad) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".+~".contains(*c)))
    {
        let hint = match bad {
            '-' => format!(
                "`-` separates the Debian revision and is not allowed in an RPM Version; for a pre-release write `{}`, otherwise use `.` or `+`",
                v.replacen('-', "~", 1)
            ),
            ':' => "`:` introduces an epoch, which pipe does not write; drop it".into(),
            '_' => "dpkg rejects `_` in versions; use `.` or `+`".into(),
            '^' => "`^` is understood by rpm but rejected by dpkg; use `+`".into(),
            _ => "versions may contain letters, digits, `.`, `+` and `~` only".into(),
        };
        return Err((format!("version `{v}` contains `{bad}`"), hint));
    }
    let lower = v.to_ascii_lowercase();
    for word in PRERELEASE_WORDS {
        if let Some(pos) = find_word_after_release(&lower, word) {
            let (release, rest) = v.split_at(pos);
            let release = release.trim_end_matches(['.', '+']);
            return Err((
                format!(
                    "version `{v}` sorts after `{release}` in dpkg and rpm, so the final release would look like a downgrade"
                ),
                format!(
                    "write the pre-release with `~`, which sorts before everything: `{release}~{rest}`"
                ),
            ));
        }
    }
    if v.contains("..") || v.ends_with('.') {
        return Err((
            format!("version `{v}` has an empty component"),
            "remove the doubled or trailing `.`".into(),
        ));
    }
    Ok(())
}

/// Position of `word` in `v` when it follows a digit (optionally via `.` or
/// `+`) and is not already preceded by `~`.
fn find_word_after_release(v: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = v[from..].find(word).map(|i| i + from) {
        let before = &v[..i];
        let prev = before.trim_end_matches(['.', '+']);
        let next_ok = v[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_digit() || c == '.');
        if !before.contains('~') && prev.ends_with(|c: char| c.is_ascii_digit()) && next_ok {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// Environment names become apt suites, yum repository directories and
/// registry tags: lowercase letters, digits and `-`, starting with a letter.
pub fn environment_name(name: &str) -> Result<(), Violation> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        return Ok(());
    }
    Err((
        format!("`{name}` is not a valid environment name"),
        "environment names become apt suites and image tags: lowercase letters, digits and `-`, starting with a letter, at most 63 characters".into(),
    ))
}

/// OCI distribution spec: a repository path component.
pub(crate) fn image_name(name: &str) -> Result<(), Violation> {
    let ok = !name.is_empty()
        && name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        return Ok(());
    }
    Err((
        format!("`{name}` is not a valid image name"),
        "OCI image names are lowercase letters and digits, separated by single `.`, `_` or `-`"
            .into(),
    ))
}

/// Machine and project names end up in file names and store keys.
pub(crate) fn simple_name(kind: &str, name: &str) -> Result<(), Violation> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        return Ok(());
    }
    Err((
        format!("`{name}` is not a valid {kind} name"),
        "use letters, digits, `-`, `_` and `.`, starting with a letter or digit".into(),
    ))
}

/// An absolute path inside the installed system, without `.` or `..`
/// components (which would let a package write outside where it says).
pub(crate) fn install_path(path: &str) -> Result<(), Violation> {
    if !path.starts_with('/') {
        return Err((
            format!("`{path}` is not an absolute path"),
            format!("destinations are paths in the installed system: write `/{path}`"),
        ));
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err((
            format!("`{path}` contains a `.` or `..` component"),
            "write the destination without `.` and `..`: packages must say exactly where each file goes".into(),
        ));
    }
    if path.contains("//") {
        return Err((
            format!("`{path}` contains an empty component"),
            "remove the doubled `/`".into(),
        ));
    }
    if path.contains(['\n', '\0']) {
        return Err((
            format!("`{path}` contains a newline or NUL"),
            "neither tar nor cpio can carry such a name".into(),
        ));
    }
    Ok(())
}

/// A path inside the project: relative, without `..` (a step must not read
/// or write outside the project it is cached for).
pub(crate) fn relative_path(path: &str) -> Result<(), Violation> {
    if path.starts_with('/') {
        return Err((
            format!("`{path}` is an absolute path"),
            "step inputs and outputs are relative to the directory holding pipeline.toml".into(),
        ));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err((
            format!("`{path}` leaves the project directory"),
            "step inputs and outputs stay inside the project, so the cache can account for them"
                .into(),
        ));
    }
    Ok(())
}

/// One Debian relation: alternatives separated by `|`, each `name`,
/// optionally with `(OP version)` where OP is one of dpkg's five operators.
pub(crate) fn relation(rel: &str) -> Result<(), Violation> {
    for alt in rel.split('|') {
        let alt = alt.trim();
        let (name, rest) = alt
            .split_once('(')
            .map_or((alt, None), |(n, r)| (n.trim(), Some(r)));
        let name = name.split(':').next().unwrap_or(name);
        let name_ok = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        let constraint_ok = rest.is_none_or(|r| {
            let Some(inner) = r.trim().strip_suffix(')') else {
                return false;
            };
            let inner = inner.trim();
            ["<<", "<=", "=", ">=", ">>"].iter().any(|op| {
                inner.strip_prefix(op).is_some_and(|v| {
                    let v = v.trim();
                    !v.is_empty() && !v.contains(char::is_whitespace)
                })
            })
        });
        if !name_ok || !constraint_ok {
            return Err((
                format!("`{rel}` is not a valid package relation"),
                "write `name`, `name (>= 1.0)` or alternatives `a | b`; operators are <<, <=, =, >=, >>".into(),
            ));
        }
    }
    Ok(())
}

/// Permission bits written as an octal string (`"0755"`).
pub(crate) fn octal_mode(mode: &str) -> Result<u32, Violation> {
    let ok = (3..=4).contains(&mode.len()) && mode.chars().all(|c| ('0'..='7').contains(&c));
    match u32::from_str_radix(mode, 8) {
        Ok(m) if ok => Ok(m),
        _ => Err((
            format!("mode `{mode}` is not an octal permission"),
            "write three or four octal digits as a string, e.g. `mode = \"0755\"`".into(),
        )),
    }
}

/// A size such as `512M` or `2G` (binary units), in bytes.
pub fn size(text: &str) -> Result<u64, Violation> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let factor: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if factor != 0 && n > 0 => n.checked_mul(factor).ok_or_else(|| {
            (
                format!("size `{text}` is too large"),
                "use a smaller size".into(),
            )
        }),
        _ => Err((
            format!("`{text}` is not a size"),
            "write a number with a binary unit, e.g. `512M` or `4G`".into(),
        )),
    }
}

/// Closest candidate to `given`, if one is close enough to be a likely typo:
/// a transposition or a couple of edits (`dve`, `sumary`) or a near prefix.
pub(crate) fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let allowed_edits = (given.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let edits = strsim::damerau_levenshtein(given, c);
            let similarity = strsim::jaro_winkler(given, c);
            (edits <= allowed_edits || similarity > 0.85).then_some((edits, c))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, c)| c)
}

/// A duration written as a count and a unit: `45s`, `30m`, `12h`, `7d`,
/// `2w`, `1y`. Zero is refused: every duration pipe takes is a lifetime.
pub fn duration(s: &str) -> Result<std::time::Duration, Violation> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let hint = || "write a count and a unit (s, m, h, d, w, y), e.g. `7d` or `12h`".to_string();
    let n: u64 = n
        .parse()
        .map_err(|_| (format!("`{s}` is not a duration"), hint()))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err((format!("`{s}` has no known unit"), hint())),
    };
    if n == 0 {
        return Err((format!("`{s}` is zero"), "give it a positive length".into()));
    }
    // Added to the current time and written as a date: at most 100 years,
    // so no later sum overflows.
    match n.checked_mul(secs) {
        Some(total) if total <= MAX_DURATION_SECS => Ok(std::time::Duration::from_secs(total)),
        _ => Err((
            format!("`{s}` is too long"),
            "at most 100 years (`100y`)".into(),
        )),
    }
}

/// The latest build timestamp: rpm headers keep times in 32 unsigned bits.
pub(crate) const MAX_EPOCH: u64 = u32::MAX as u64;

/// The longest duration `pipeline.toml` accepts.
pub(crate) const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_both_tools_accept_and_order() {
        for ok in [
            "1.2.0",
            "1.2.0~rc1",
            "2024.01.02",
            "1.0+git20240101",
            "0.9~beta.2",
            "1.0.devices",
        ] {
            assert!(
                version(ok).is_ok(),
                "{ok} should be accepted: {:?}",
                version(ok)
            );
        }
    }

    #[test]
    fn versions_rejected_with_the_fix() {
        let (msg, hint) = version("1.2.0rc1").unwrap_err();
        assert!(msg.contains("sorts after `1.2.0`"), "{msg}");
        assert!(hint.contains("`1.2.0~rc1`"), "{hint}");
        let (_, hint) = version("1.2.0.beta2").unwrap_err();
        assert!(hint.contains("`1.2.0~beta2`"), "{hint}");
        let (msg, hint) = version("1.2.0-rc1").unwrap_err();
        assert!(msg.contains("contains `-`"), "{msg}");
        assert!(hint.contains("`1.2.0~rc1`"), "{hint}");
        assert!(
            version("v1.0")
                .unwrap_err()
                .0
                .contains("does not start with a digit")
        );
        assert!(version("1:1.0").is_err());
        assert!(version("1_0").is_err());
        assert!(version("1..0").is_err());
        assert!(version("").is_err());
    }

    #[test]
    fn package_names() {
        assert!(debian_package_name("hello").is_ok());
        assert!(debian_package_name("lib-foo2.0+x").is_ok());
        assert!(debian_package_name("Hello").is_err());
        assert!(debian_package_name("h").is_err());
        assert!(debian_package_name("-x").is_err());
        assert!(debian_package_name("a_b").is_err());
        assert!(rpm_package_name("Hello_World").is_ok());
        assert!(rpm_package_name("a b").is_err());
        assert!(rpm_package_name("-a").is_err());
        assert!(rpm_package_name("a/b").is_err());
    }

    #[test]
    fn install_paths_modes_sizes() {
        assert!(install_path("/usr/bin/hello").is_ok());
        assert!(install_path("/usr/share/hello/").is_ok());
        assert!(install_path("usr/bin/hello").is_err());
        assert!(install_path("/usr/../etc/passwd").is_err());
        assert_eq!(octal_mode("0755"), Ok(0o755));
        assert_eq!(octal_mode("644"), Ok(0o644));
        assert!(octal_mode("0855").is_err());
        assert!(octal_mode("rwx").is_err());
        assert!(octal_mode("07555").is_err());
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert!(size("12Q").is_err());
        assert!(size("0").is_err());
    }

    #[test]
    fn relations() {
        for ok in [
            "libc6 (>= 2.36)",
            "sed",
            "exim4 | mail-transport-agent (<< 2)",
            "python3:any",
        ] {
            assert!(relation(ok).is_ok(), "{ok}");
        }
        for bad in ["libc6 (> 2.36)", "Libc6", "libc6 (>= )", "libc6 >= 2"] {
            assert!(relation(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("sumary", ["summary", "license"]),
            Some("summary")
        );
        assert_eq!(did_you_mean("zzz", ["summary", "license"]), None);
        assert_eq!(did_you_mean("dve", ["dev", "prod"]), Some("dev"));
        assert_eq!(did_you_mean("qcow", ["raw", "qcow2"]), Some("qcow2"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(duration("90m").unwrap().as_secs(), 5400);
        assert!(duration("0h").is_err());
        assert!(duration("7").unwrap_err().0.contains("no known unit"));
        assert!(duration("d").is_err());
        assert_eq!(duration("100y").unwrap().as_secs(), MAX_DURATION_SECS);
        assert!(duration("101y").unwrap_err().0.contains("too long"));
        assert!(duration("99999999999999999999d").is_err());
        assert!(
            duration("18446744073709551615s")
                .unwrap_err()
                .0
                .contains("too long")
        );
    }
}
