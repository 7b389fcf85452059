//! The `control` file: field validation and formatting.

use super::DebPackage;
use crate::{Error, Result};

/// Debian's version for a project version.
///
/// pipe writes the project version unchanged, with no Debian revision: the
/// package is built from the project itself, not from an upstream tarball
/// that a distribution patches, so there is no second version to count
/// (`1.2.0-1` would only suggest one). It is also what the RPM stage writes
/// as `Version`, so the same build reads the same in apt and dnf, and an
/// upstream version without a revision may not contain `-`, which the model
/// already refuses. The version must start with a digit and use only ASCII
/// letters, digits, `.`, `+` and `~`.
pub fn version_from_project(version: &str) -> Result<String> {
    let ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c));
    if !ok {
        return Err(Error::InvalidField {
            field: "Version",
            value: version.to_owned(),
            expected: "a project version starting with a digit, made of ASCII letters, digits, `.`, `+` and `~`".into(),
        });
    }
    Ok(version.to_owned())
}

/// Checks every field before anything is written.
pub(super) fn validate(pkg: &DebPackage) -> Result<()> {
    let invalid = |field: &'static str, value: &str, expected: &str| Error::InvalidField {
        field,
        value: value.to_owned(),
        expected: expected.to_owned(),
    };
    let name_ok = pkg.name.len() >= 2
        && pkg
            .name
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !name_ok {
        return Err(invalid(
            "Package",
            &pkg.name,
            "at least two lowercase letters, digits, `+`, `-` or `.`, starting with a letter or digit",
        ));
    }
    if !valid_version(&pkg.version) {
        return Err(invalid(
            "Version",
            &pkg.version,
            "[epoch:]upstream[-revision], the upstream part starting with a digit",
        ));
    }
    let arch_ok = !pkg.arch.is_empty()
        && pkg
            .arch
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !arch_ok {
        return Err(invalid(
            "Architecture",
            &pkg.arch,
            "a Debian architecture name such as `amd64` or `all`",
        ));
    }
    let one_line = |field: &'static str, value: &str| {
        if value.trim().is_empty() || value.contains(['\n', '\r']) {
            Err(invalid(field, value, "a non-empty single line"))
        } else {
            Ok(())
        }
    };
    one_line("Maintainer", &pkg.maintainer)?;
    one_line("Description", &pkg.summary)?;
    one_line("Section", &pkg.section)?;
    one_line("Priority", &pkg.priority)?;
    if let Some(h) = &pkg.homepage {
        one_line("Homepage", h)?;
    }
    for (field, list) in pkg.relations.fields() {
        for rel in list {
            one_line(field, rel)?;
            if rel.contains(',') {
                return Err(invalid(
                    field,
                    rel,
                    "one relation per list item, without `,`",
                ));
            }
        }
    }
    Ok(())
}

/// dpkg's version syntax (deb-version(7)).
fn valid_version(v: &str) -> bool {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, v),
    };
    if epoch.is_some_and(|e| e.is_empty() || !e.chars().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r)),
        None => (rest, None),
    };
    let upstream_ok = upstream.starts_with(|c: char| c.is_ascii_digit())
        && upstream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c));
    let revision_ok = revision.is_none_or(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c))
    });
    upstream_ok && revision_ok
}

/// The text of the `control` file, fields in the order dpkg-gencontrol
/// writes them.
pub(super) fn render(pkg: &DebPackage, installed_size_kib: u64) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    };
    field("Package", &pkg.name);
    field("Version", &pkg.version);
    field("Architecture", &pkg.arch);
    field("Maintainer", pkg.maintainer.trim());
    field("Installed-Size", &installed_size_kib.to_string());
    for (name, list) in pkg.relations.fields() {
        if !list.is_empty() {
            let joined: Vec<&str> = list.iter().map(|r| r.trim()).collect();
            field(name, &joined.join(", "));
        }
    }
    field("Section", pkg.section.trim());
    field("Priority", pkg.priority.trim());
    if let Some(h) = &pkg.homepage {
        field("Homepage", h.trim());
    }
    let description = description(pkg.summary.trim(), pkg.description.as_deref());
    field("Description", &description);
    out
}

/// The summary, then the extended description as continuation lines: each
/// line indented by one space, blank lines written as ` .` (deb-control(5)).
fn description(summary: &str, long: Option<&str>) -> String {
    let mut out = summary.to_owned();
    let Some(long) = long else { return out };
    let lines: Vec<&str> = long.lines().map(str::trim_end).collect();
    // Leading and trailing blank lines would only be ` .` noise.
    let start = lines.iter().position(|l| !l.is_empty());
    let end = lines.iter().rposition(|l| !l.is_empty());
    let (Some(start), Some(end)) = (start, end) else {
        return out;
    };
    for line in lines.get(start..=end).unwrap_or_default() {
        out.push_str("\n ");
        // A line that is only `.` would read as a paragraph break.
        if line.is_empty() || *line == "." {
            out.push('.');
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_use_continuation_lines() {
        assert_eq!(description("Hi", None), "Hi");
        assert_eq!(
            description("Hi", Some("\nFirst para\nstill\n\n  verbatim\n\n")),
            "Hi\n First para\n still\n .\n   verbatim"
        );
        assert_eq!(description("Hi", Some("a\n \t\nb")), "Hi\n a\n .\n b");
    }

    #[test]
    fn versions() {
        for ok in ["1.2.0", "1:1.0-1", "1.0~rc1+git", "2.0-1.1"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["", "v1", "1.0-", "a:1", "1_0", "1.0 beta"] {
            assert!(!valid_version(bad), "{bad}");
        }
        assert_eq!(version_from_project("1.2.0~rc1").unwrap(), "1.2.0~rc1");
        let err = version_from_project("1.2.0-1").unwrap_err().to_string();
        assert!(err.contains("invalid Version `1.2.0-1`"), "{err}");
    }
}
