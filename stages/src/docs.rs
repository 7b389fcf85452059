//! What the distributions' tools expect to find documented in a package:
//! its copyright and its changelog.
//!
//! - [`Copyright`] renders the machine-readable copyright file (DEP-5,
//!   <https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/>):
//!   the .deb ships it as `/usr/share/doc/NAME/copyright`, the .rpm as
//!   license documentation (`%license`) in `/usr/share/licenses/NAME/`.
//! - [`Changelog`] reads a changelog in Debian's format
//!   (deb-changelog(5)) or in a simple list format (`## VERSION - DATE`
//!   headings, `- change` items, as "keep a changelog" files are written),
//!   or generates one entry for the version, dated `SOURCE_DATE_EPOCH`. The
//!   .deb ships its Debian rendering as `changelog.gz` (pipe's versions have
//!   no Debian revision, so the packages are native and Debian policy 12.7
//!   names the file `changelog.gz`), compressed like `gzip -9n`; the .rpm
//!   carries the entries as `%changelog` header tags.
//!
//! Both are pure functions of their inputs, so artifacts stay reproducible.

use std::fmt::Write as _;
use std::io::Write as _;

/// The documentation a package carries: its copyright file's text and its
/// changelog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Docs {
    /// The copyright file ([`Copyright::render`]).
    pub copyright: String,
    /// The changelog.
    pub changelog: Changelog,
}

impl Docs {
    /// Writes the files a .deb of `package` carries for them into `dir`
    /// (a scratch directory): `/usr/share/doc/PACKAGE/copyright` and
    /// `changelog.gz`.
    pub(crate) fn deb_files(
        &self,
        package: &str,
        dir: &std::path::Path,
    ) -> std::io::Result<Vec<crate::tree::Generated>> {
        let doc = format!("/usr/share/doc/{package}");
        Ok(vec![
            write_generated(
                dir,
                "copyright",
                format!("{doc}/copyright"),
                self.copyright.as_bytes(),
            )?,
            write_generated(
                dir,
                "changelog.gz",
                format!("{doc}/changelog.gz"),
                &self.changelog.debian_gz(),
            )?,
        ])
    }

    /// The file an .rpm of `package` carries: the copyright file as license
    /// documentation, `/usr/share/licenses/PACKAGE/copyright`.
    pub(crate) fn rpm_files(
        &self,
        package: &str,
        dir: &std::path::Path,
    ) -> std::io::Result<Vec<crate::tree::Generated>> {
        Ok(vec![write_generated(
            dir,
            "copyright",
            format!("{}/copyright", rpm_license_dir(package)),
            self.copyright.as_bytes(),
        )?])
    }
}

/// Where an .rpm's license documentation goes (rpmbuild's `%license`).
pub(crate) fn rpm_license_dir(package: &str) -> String {
    format!("/usr/share/licenses/{package}")
}

fn write_generated(
    dir: &std::path::Path,
    name: &str,
    path: String,
    bytes: &[u8],
) -> std::io::Result<crate::tree::Generated> {
    let src = dir.join(name);
    std::fs::write(&src, bytes)?;
    Ok(crate::tree::Generated {
        path,
        src,
        size: bytes.len() as u64,
    })
}

/// The inputs of a DEP-5 copyright file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copyright {
    /// `Upstream-Name`: the package.
    pub name: String,
    /// `Upstream-Contact`: the maintainer, `Name <email>`.
    pub contact: Option<String>,
    /// `Source`: the project's home page.
    pub source: Option<String>,
    /// `Copyright` of `Files: *`: who holds it (`2023 Example Ltd`).
    pub holder: String,
    /// `License` short name or SPDX expression; `unknown` when `None`.
    pub license: Option<String>,
    /// The license's full text, when given.
    pub text: Option<String>,
}

/// Licenses whose full text Debian systems carry in
/// `/usr/share/common-licenses`: SPDX identifier (and Debian short name) to
/// the file name there and the license's title.
const COMMON_LICENSES: &[(&[&str], &str, &str)] = &[
    (
        &["Apache-2.0"],
        "Apache-2.0",
        "the Apache License, Version 2.0",
    ),
    (
        &["Artistic-1.0", "Artistic"],
        "Artistic",
        "the Artistic License",
    ),
    (
        &["CC0-1.0"],
        "CC0-1.0",
        "the Creative Commons CC0 1.0 Universal license",
    ),
    (
        &[
            "GFDL-1.2",
            "GFDL-1.2-only",
            "GFDL-1.2-or-later",
            "GFDL-1.2+",
        ],
        "GFDL-1.2",
        "the GNU Free Documentation License, Version 1.2",
    ),
    (
        &[
            "GFDL-1.3",
            "GFDL-1.3-only",
            "GFDL-1.3-or-later",
            "GFDL-1.3+",
        ],
        "GFDL-1.3",
        "the GNU Free Documentation License, Version 1.3",
    ),
    (
        &[
            "GPL-2",
            "GPL-2.0",
            "GPL-2.0-only",
            "GPL-2.0-or-later",
            "GPL-2+",
            "GPL-2.0+",
        ],
        "GPL-2",
        "the GNU General Public License, Version 2",
    ),
    (
        &[
            "GPL-3",
            "GPL-3.0",
            "GPL-3.0-only",
            "GPL-3.0-or-later",
            "GPL-3+",
            "GPL-3.0+",
        ],
        "GPL-3",
        "the GNU General Public License, Version 3",
    ),
    (
        &[
            "LGPL-2",
            "LGPL-2.0",
            "LGPL-2.0-only",
            "LGPL-2.0-or-later",
            "LGPL-2+",
        ],
        "LGPL-2",
        "the GNU Library General Public License, Version 2",
    ),
    (
        &[
            "LGPL-2.1",
            "LGPL-2.1-only",
            "LGPL-2.1-or-later",
            "LGPL-2.1+",
        ],
        "LGPL-2.1",
        "the GNU Lesser General Public License, Version 2.1",
    ),
    (
        &[
            "LGPL-3",
            "LGPL-3.0",
            "LGPL-3.0-only",
            "LGPL-3.0-or-later",
            "LGPL-3+",
        ],
        "LGPL-3",
        "the GNU Lesser General Public License, Version 3",
    ),
    (
        &["MPL-1.1"],
        "MPL-1.1",
        "the Mozilla Public License, Version 1.1",
    ),
    (
        &["MPL-2.0"],
        "MPL-2.0",
        "the Mozilla Public License, Version 2.0",
    ),
];

impl Copyright {
    /// The copyright file's text.
    ///
    /// The license's full text is the given one (each line indented by one
    /// space, blank lines as ` .`); without one, a license Debian systems
    /// carry in `/usr/share/common-licenses` is referred to there, any other
    /// is named only.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
        );
        let _ = writeln!(out, "Upstream-Name: {}", self.name);
        if let Some(c) = &self.contact {
            let _ = writeln!(out, "Upstream-Contact: {}", c.trim());
        }
        if let Some(s) = &self.source {
            let _ = writeln!(out, "Source: {}", s.trim());
        }
        let license = self.license.as_deref().map_or("unknown", str::trim);
        let _ = write!(
            out,
            "\nFiles: *\nCopyright: {}\nLicense: {license}\n",
            self.holder.trim()
        );
        match &self.text {
            Some(text) => out.push_str(&continuation(text)),
            None => {
                if let Some((_, file, title)) = COMMON_LICENSES
                    .iter()
                    .find(|(names, _, _)| names.contains(&license))
                {
                    let _ = writeln!(
                        out,
                        " On Debian systems, the complete text of {title}\n can be found in \"/usr/share/common-licenses/{file}\"."
                    );
                }
            }
        }
        out
    }
}

/// `text` as continuation lines of a control-style field.
fn continuation(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let start = lines.iter().position(|l| !l.is_empty()).unwrap_or(0);
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |e| e + 1);
    let mut out = String::new();
    for line in lines.get(start..end).unwrap_or_default() {
        if line.is_empty() || *line == "." {
            out.push_str(" .\n");
        } else {
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A package's changelog: what the .deb and the .rpm carry of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changelog {
    /// The text in Debian's format (deb-changelog(5)), newest entry first.
    pub debian: String,
    /// The entries, newest first.
    pub entries: Vec<ChangelogEntry>,
}

/// One entry of a [`Changelog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// The version it describes.
    pub version: String,
    /// Who made it, `Name <email>`.
    pub author: String,
    /// When, seconds since the epoch.
    pub time: u64,
    /// The changes, one item per element, without their bullet.
    pub changes: Vec<String>,
}

/// Why a changelog file was refused: the line (1-based) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ChangelogError {
    /// 1-based line number in the file (0: the file as a whole).
    pub line: usize,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl Changelog {
    /// One entry for `version` by `author`, dated `time`: what a package
    /// without a changelog file gets.
    pub fn generated(package: &str, version: &str, author: &str, time: u64) -> Changelog {
        let entry = ChangelogEntry {
            version: version.to_string(),
            author: author.trim().to_string(),
            time,
            changes: vec![format!("Release {version}.")],
        };
        Changelog::from_entries(package, vec![entry])
    }

    /// Entries rendered in Debian's format (distribution `unstable`,
    /// urgency `medium`, dates in UTC).
    pub(crate) fn from_entries(package: &str, entries: Vec<ChangelogEntry>) -> Changelog {
        let mut debian = String::new();
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                debian.push('\n');
            }
            let _ = writeln!(
                debian,
                "{package} ({}) unstable; urgency=medium\n",
                e.version
            );
            for change in &e.changes {
                let mut lines = change.lines();
                let _ = writeln!(debian, "  * {}", lines.next().unwrap_or_default());
                for more in lines {
                    let _ = writeln!(debian, "    {}", more.trim());
                }
            }
            let _ = writeln!(debian, "\n -- {}  {}", e.author, rfc2822(e.time));
        }
        Changelog { debian, entries }
    }

    /// Reads a changelog file: Debian's format when its first line is an
    /// entry heading (`NAME (VERSION) DIST; urgency=U`), else the simple
    /// list format, whose entries are written by `author`:
    ///
    /// ```text
    /// ## 1.2.0 - 2023-11-14
    /// - Greets in French.
    ///   Continuation lines are indented.
    ///
    /// ## [1.1.0] - 2023-10-01
    /// - First release.
    /// ```
    ///
    /// Lines before the first heading (a title, prose) and an `Unreleased`
    /// section are ignored. Either way the newest entry must describe
    /// `version` (the package's), and entries must not grow newer down the
    /// file.
    pub fn parse(
        package: &str,
        version: &str,
        author: &str,
        text: &str,
    ) -> Result<Changelog, ChangelogError> {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let changelog = if is_debian_heading(first) {
            Changelog {
                debian: normalise_newlines(text),
                entries: parse_debian(text)?,
            }
        } else {
            Changelog::from_entries(package, parse_simple(author.trim(), text)?)
        };
        let newest = changelog.entries.first().ok_or_else(|| ChangelogError {
            line: 0,
            message: "no entry found: expected `## VERSION - YYYY-MM-DD` headings or Debian's `NAME (VERSION) DIST; urgency=U`".into(),
        })?;
        if newest.version != version {
            return Err(ChangelogError {
                line: 0,
                message: format!(
                    "the newest entry is for version `{}`, expected `{version}` (the project version)",
                    newest.version
                ),
            });
        }
        Ok(changelog)
    }

    /// The Debian text compressed as `gzip -9n` does (no name, no time,
    /// best compression), for `changelog.gz`.
    pub(crate) fn debian_gz(&self) -> Vec<u8> {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(3)
            .write(Vec::new(), flate2::Compression::best());
        #[allow(clippy::expect_used, reason = "writing to memory cannot fail")]
        {
            gz.write_all(self.debian.as_bytes())
                .expect("writing to memory cannot fail");
            gz.finish().expect("writing to memory cannot fail")
        }
    }
}

fn normalise_newlines(text: &str) -> String {
    let mut out: String = text
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn is_debian_heading(line: &str) -> bool {
    let Some((name, rest)) = line.split_once(" (") else {
        return false;
    };
    !name.is_empty()
        && !name.starts_with(char::is_whitespace)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && rest.contains(") ")
        && rest.contains(';')
}

fn parse_debian(text: &str) -> Result<Vec<ChangelogEntry>, ChangelogError> {
    let mut entries = Vec::new();
    let mut current: Option<(usize, String, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |message: String| ChangelogError { line: n, message };
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            if let Some((start, _, _)) = &current {
                return Err(err(format!(
                    "a new entry starts before the entry of line {start} has its ` -- Name <email>  Date` trailer"
                )));
            }
            if !is_debian_heading(line) {
                return Err(err(format!(
                    "expected an entry heading `NAME (VERSION) DIST; urgency=U`, found `{}`",
                    line.trim()
                )));
            }
            let version = line
                .split_once(" (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(v, _)| v.trim().to_string())
                .unwrap_or_default();
            if version.is_empty() {
                return Err(err("the heading has an empty version".into()));
            }
            current = Some((n, version, Vec::new()));
        } else if let Some(trailer) = line.strip_prefix(" -- ") {
            let Some((start, version, changes)) = current.take() else {
                return Err(err("a ` -- ` trailer without an entry heading".into()));
            };
            let (author, date) = trailer.split_once("  ").ok_or_else(|| {
                err("expected ` -- Name <email>  Date` (two spaces before the date)".into())
            })?;
            let author = author.trim();
            if !(author.contains('<') && author.ends_with('>')) {
                return Err(err(format!(
                    "`{author}` is not `Name <email>` (the entry starts on line {start})"
                )));
            }
            let time = parse_rfc2822(date.trim()).ok_or_else(|| {
                err(format!(
                    "`{}` is not a date like `Tue, 14 Nov 2023 22:13:20 +0000`",
                    date.trim()
                ))
            })?;
            if changes.is_empty() {
                return Err(err(format!("the entry of line {start} lists no change")));
            }
            entries.push(ChangelogEntry {
                version,
                author: author.to_string(),
                time,
                changes,
            });
        } else {
            let Some((_, _, changes)) = current.as_mut() else {
                return Err(err("a change line outside an entry".into()));
            };
            let body = line.trim();
            match body.strip_prefix("* ").or_else(|| body.strip_prefix("- ")) {
                Some(item) => changes.push(item.trim().to_string()),
                None => match changes.last_mut() {
                    // A continuation line of the item above, or a
                    // `[ Name ]` attribution starting a group.
                    Some(last) if !body.starts_with('[') => {
                        last.push('\n');
                        last.push_str(body);
                    }
                    _ => changes.push(body.to_string()),
                },
            }
        }
    }
    if let Some((start, _, _)) = current {
        return Err(ChangelogError {
            line: start,
            message: "this entry has no ` -- Name <email>  Date` trailer".into(),
        });
    }
    check_order(&entries)?;
    Ok(entries)
}

fn parse_simple(author: &str, text: &str) -> Result<Vec<ChangelogEntry>, ChangelogError> {
    let mut entries: Vec<ChangelogEntry> = Vec::new();
    // In an `Unreleased` section (skipped), or before the first heading.
    let mut skipping = true;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |message: String| ChangelogError { line: n, message };
        let trimmed = line.trim_end();
        if let Some(heading) = trimmed.strip_prefix("## ") {
            let heading = heading.trim();
            if heading
                .trim_matches(['[', ']'])
                .eq_ignore_ascii_case("unreleased")
            {
                skipping = true;
                continue;
            }
            let (version, date) = heading
                .split_once(" - ")
                .or_else(|| heading.split_once(" ("))
                .ok_or_else(|| {
                    err(format!(
                        "expected a heading `## VERSION - YYYY-MM-DD`, found `{heading}`"
                    ))
                })?;
            let version = version.trim().trim_matches(['[', ']']).to_string();
            let date = date.trim().trim_end_matches(')');
            let time = parse_ymd(date)
                .ok_or_else(|| err(format!("`{date}` is not a date written `YYYY-MM-DD`")))?;
            if version.is_empty() || version.contains(char::is_whitespace) {
                return Err(err(format!("`{version}` is not a version")));
            }
            entries.push(ChangelogEntry {
                version,
                author: author.to_string(),
                time,
                changes: Vec::new(),
            });
            skipping = false;
            continue;
        }
        if skipping || trimmed.is_empty() {
            continue;
        }
        // Not skipping: a heading opened an entry.
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        let body = trimmed.trim_start();
        match body.strip_prefix("- ").or_else(|| body.strip_prefix("* ")) {
            Some(item) => entry.changes.push(item.trim().to_string()),
            None => match entry.changes.last_mut() {
                Some(last) if trimmed.starts_with(char::is_whitespace) => {
                    last.push('\n');
                    last.push_str(body);
                }
                _ => {
                    return Err(err(format!(
                        "expected a change item `- text` (or an indented continuation line), found `{body}`"
                    )));
                }
            },
        }
    }
    if let Some(e) = entries.iter().find(|e| e.changes.is_empty()) {
        let line = text
            .lines()
            .position(|l| l.starts_with("## ") && l.contains(&e.version))
            .map_or(0, |i| i + 1);
        return Err(ChangelogError {
            line,
            message: format!("the entry for `{}` lists no change", e.version),
        });
    }
    check_order(&entries)?;
    Ok(entries)
}

/// Newest first: rpm and dpkg both read the first entry as the latest.
fn check_order(entries: &[ChangelogEntry]) -> Result<(), ChangelogError> {
    for pair in entries.windows(2) {
        let [above, below] = pair else { continue };
        if below.time > above.time {
            return Err(ChangelogError {
                line: 0,
                message: format!(
                    "the entry for `{}` is dated after the one above it (`{}`): newest entries come first",
                    below.version, above.version
                ),
            });
        }
    }
    Ok(())
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `Tue, 14 Nov 2023 22:13:20 +0000`, in UTC.
pub(crate) fn rfc2822(time: u64) -> String {
    let days = (time / 86_400) as i64;
    let secs = time % 86_400;
    let (y, m, d) = civil_from_days(days);
    #[allow(
        clippy::indexing_slicing,
        reason = "rem_euclid(7) is below DAYS' length 7; civil_from_days returns m in 1..=12 (mp is 0..=11), below MONTHS' length 12 after - 1"
    )]
    let (day, month) = (DAYS[days.rem_euclid(7) as usize], MONTHS[m as usize - 1]);
    format!(
        "{day}, {d:02} {month} {y} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The year of `time` (UTC), for a default copyright line.
pub fn year(time: u64) -> i64 {
    civil_from_days((time / 86_400) as i64).0
}

fn parse_ymd(s: &str) -> Option<u64> {
    let mut parts = s.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1970..=9999).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    if d == 0 || d > 31 {
        return None;
    }
    u64::try_from(days_from_civil(y, m, d) * 86_400).ok()
}

/// `[Day, ]DD Mon YYYY HH:MM:SS ±HHMM` → seconds since the epoch.
fn parse_rfc2822(s: &str) -> Option<u64> {
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let mut parts = s.split_whitespace();
    let d: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let m = MONTHS.iter().position(|x| *x == month)? as u32 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let se: i64 = hms.next()?.parse().ok()?;
    let zone = parts.next()?;
    if parts.next().is_some() || hms.next().is_some() || !(1..=31).contains(&d) {
        return None;
    }
    let (sign, digits) = match zone.split_at_checked(1)? {
        ("+", d) => (1, d),
        ("-", d) => (-1, d),
        _ => return None,
    };
    if digits.len() != 4 || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let off: i64 = digits[..2].parse::<i64>().ok()? * 3600 + digits[2..].parse::<i64>().ok()? * 60;
    let t = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se - sign * off;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(rfc2822(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(
            parse_rfc2822("Tue, 14 Nov 2023 23:13:20 +0100"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_ymd("2023-11-14"), Some(1_699_920_000));
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(year(1_700_000_000), 2023);
        assert!(parse_ymd("2023-13-01").is_none());
        assert!(parse_rfc2822("14 Nov 2023").is_none());
    }

    #[test]
    fn generated_entry_is_debian_format() {
        let c = Changelog::generated("hello", "1.2.0", "Ops <ops@example.com>", 1_700_000_000);
        assert_eq!(
            c.debian,
            "hello (1.2.0) unstable; urgency=medium\n\n  * Release 1.2.0.\n\n -- Ops <ops@example.com>  Tue, 14 Nov 2023 22:13:20 +0000\n"
        );
        let again = Changelog::parse("hello", "1.2.0", "x", &c.debian).unwrap();
        assert_eq!(again.entries, c.entries);
    }

    #[test]
    fn simple_list_is_rendered() {
        let text = "# Changelog\n\n## [Unreleased]\n- not yet\n\n## 1.2.0 - 2023-11-14\n- Greets in French.\n  Politely.\n* Reads the config.\n\n## [1.1.0] - 2023-10-01\n- First release.\n";
        let c = Changelog::parse("hello", "1.2.0", "Ops <ops@example.com>", text).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(
            c.entries[0].changes,
            ["Greets in French.\nPolitely.", "Reads the config."]
        );
        assert!(
            c.debian.starts_with(
                "hello (1.2.0) unstable; urgency=medium\n\n  * Greets in French.\n    Politely.\n  * Reads the config.\n\n -- Ops <ops@example.com>  Tue, 14 Nov 2023 00:00:00 +0000\n\nhello (1.1.0)"
            ),
            "{}",
            c.debian
        );
    }

    #[test]
    fn bad_changelogs_name_the_line() {
        let e = Changelog::parse("h", "1.0", "a <b@c>", "## 1.0 - 2023-1x-01\n- x\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = Changelog::parse("h", "1.0", "a <b@c>", "## 1.0 - 2023-01-01\nloose text\n")
            .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = Changelog::parse("h", "2.0", "a <b@c>", "## 1.0 - 2023-01-01\n- x\n").unwrap_err();
        assert!(e.message.contains("expected `2.0`"), "{e}");
        let deb = "h (1.0) unstable; urgency=low\n\n  * x\n\n -- A <a@b>  Mon, 32 Jan 2023 00:00:00 +0000\n";
        let e = Changelog::parse("h", "1.0", "", deb).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let order = "## 1.0 - 2023-01-01\n- x\n## 0.9 - 2023-02-01\n- y\n";
        let e = Changelog::parse("h", "1.0", "a <b@c>", order).unwrap_err();
        assert!(e.message.contains("newest entries come first"), "{e}");
    }

    #[test]
    fn copyright_is_dep5() {
        let mut c = Copyright {
            name: "hello".into(),
            contact: Some("Ops <ops@example.com>".into()),
            source: None,
            holder: "2023 Ops".into(),
            license: Some("Apache-2.0".into()),
            text: None,
        };
        let text = c.render();
        assert!(text.contains("\nFiles: *\nCopyright: 2023 Ops\nLicense: Apache-2.0\n On Debian systems, the complete text of the Apache License, Version 2.0\n can be found in \"/usr/share/common-licenses/Apache-2.0\".\n"), "{text}");
        c.license = Some("MIT".into());
        c.text = Some("Permission is granted.\n\nNo warranty.\n".into());
        assert!(
            c.render()
                .ends_with("License: MIT\n Permission is granted.\n .\n No warranty.\n")
        );
    }

    #[test]
    fn gzip_is_reproducible() {
        let c = Changelog::generated("h", "1", "a <b@c>", 0);
        let gz = c.debian_gz();
        assert_eq!(gz, c.debian_gz());
        // No name, mtime 0, best compression (XFL 2), Unix.
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    }
}
