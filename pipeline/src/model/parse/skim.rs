//! The text of `pipeline.toml` without its `[packages.NAME]` tables, for the
//! commands that work on the store (publish, promote, history, status,
//! deploy...): they never look at a package declaration, and parsing 20,000
//! of them is most of what such a command costs.
//!
//! A line scanner, not a parser: it tracks what can span lines in TOML
//! (multi-line strings, arrays) so that only a real table header starts or
//! ends a skipped region. Every byte of a skipped region but its newlines is
//! dropped, so the kept text is at the same line and column as in the file
//! and every diagnostic about it points where it should. Anything it cannot
//! classify with certainty is kept: the worst a surprise costs is parsing
//! it.

use std::borrow::Cow;

/// What the scanner is inside of at some byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum In {
    /// Plain TOML: keys, values, brackets.
    Code,
    /// `"..."` (one line).
    Basic,
    /// `'...'` (one line).
    Literal,
    /// `"""..."""`.
    MultiBasic,
    /// `'''...'''`.
    MultiLiteral,
}

/// `source` with every top-level table whose first key is `first` (`[first]`,
/// `[first.x]`, `[[first.x.y]]`, quoted forms included) reduced to its
/// newlines; `source` itself when there is none, or when the scan meets
/// something it does not understand (the parser then reports it).
pub(crate) fn without_tables<'s>(source: &'s str, first: &str) -> Cow<'s, str> {
    match regions(source.as_bytes(), first.as_bytes()) {
        Some(regions) if !regions.is_empty() => {
            let mut out = String::with_capacity(source.len() / 4);
            let mut at = 0;
            for (start, end) in regions {
                out.push_str(source.get(at..start).unwrap_or_default());
                let skipped = source.get(start..end).unwrap_or_default();
                out.extend(skipped.bytes().filter(|b| *b == b'\n').map(|_| '\n'));
                at = end;
            }
            out.push_str(source.get(at..).unwrap_or_default());
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(source),
    }
}

/// The byte ranges of the tables to skip, each from its header line's start
/// to the next header line's start (or the end); `None` when the text does
/// not scan cleanly.
fn regions(src: &[u8], first: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut regions = Vec::new();
    let mut skipping: Option<usize> = None;
    let mut state = In::Code;
    // Open `[` and `{` of values (never of headers).
    let mut depth = 0usize;
    let mut i = 0;
    while i < src.len() {
        // At a line start.
        let line_start = i;
        if state == In::Code && depth == 0 {
            let mut j = i;
            while matches!(src.get(j), Some(b' ' | b'\t')) {
                j += 1;
            }
            if src.get(j) == Some(&b'[') {
                let skip = header_first_key(src, j).map(|k| k == first);
                let end = line_end(src, i);
                match (skip, skipping) {
                    // A header of an unknown form: kept, and it ends a
                    // skipped region.
                    (None, Some(start)) | (Some(false), Some(start)) => {
                        regions.push((start, line_start));
                        skipping = None;
                    }
                    (Some(true), None) => skipping = Some(line_start),
                    _ => {}
                }
                i = end;
                continue;
            }
        }
        // Through the line, tracking strings, comments and brackets; the
        // bytes that change nothing are skipped in a tight loop.
        loop {
            i += src
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|b| matters(state, *b))
                .unwrap_or(src.len().saturating_sub(i));
            let Some(&b) = src.get(i) else { break };
            match state {
                In::Code => match b {
                    b'\n' => {
                        i += 1;
                        break;
                    }
                    b'#' => {
                        i = line_end(src, i);
                        break;
                    }
                    b'"' if src.get(i..i + 3) == Some(b"\"\"\"") => {
                        state = In::MultiBasic;
                        i += 3;
                        continue;
                    }
                    b'\'' if src.get(i..i + 3) == Some(b"'''") => {
                        state = In::MultiLiteral;
                        i += 3;
                        continue;
                    }
                    b'"' => state = In::Basic,
                    b'\'' => state = In::Literal,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => depth = depth.checked_sub(1)?,
                    _ => {}
                },
                In::Basic => match b {
                    b'\\' => i += 1,
                    b'"' => state = In::Code,
                    b'\n' => return None,
                    _ => {}
                },
                In::Literal => match b {
                    b'\'' => state = In::Code,
                    b'\n' => return None,
                    _ => {}
                },
                In::MultiBasic | In::MultiLiteral => {
                    let quote = if state == In::MultiBasic { b'"' } else { b'\'' };
                    match b {
                        b'\\' if state == In::MultiBasic => i += 1,
                        b'\n' => {
                            i += 1;
                            break;
                        }
                        _ if b == quote && src.get(i..i + 3) == Some(&[quote; 3][..]) => {
                            // Up to two more quotes belong to the string.
                            i += 3;
                            let mut extra = 0;
                            while extra < 2 && src.get(i) == Some(&quote) {
                                i += 1;
                                extra += 1;
                            }
                            state = In::Code;
                            continue;
                        }
                        _ => {}
                    }
                }
            }
            i += 1;
        }
    }
    if state != In::Code || depth != 0 {
        return None;
    }
    if let Some(start) = skipping {
        regions.push((start, src.len()));
    }
    Some(regions)
}

/// The bytes that matter in `state` (everything else is skipped).
fn matters(state: In, b: u8) -> bool {
    match state {
        In::Code => matches!(b, b'"' | b'\'' | b'#' | b'[' | b']' | b'{' | b'}' | b'\n'),
        In::Basic | In::MultiBasic => matches!(b, b'\\' | b'"' | b'\n'),
        In::Literal | In::MultiLiteral => matches!(b, b'\'' | b'\n'),
    }
}

/// The index just past the end of the line holding `i` (past its `\n`).
fn line_end(src: &[u8], i: usize) -> usize {
    match src
        .get(i..)
        .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
    {
        Some(n) => i + n + 1,
        None => src.len(),
    }
}

/// The first key of the table header at `at` (its `[`): bare, or quoted
/// without escapes; `None` for any other form.
fn header_first_key(src: &[u8], at: usize) -> Option<&[u8]> {
    let mut i = at + 1;
    if src.get(i) == Some(&b'[') {
        i += 1;
    }
    while matches!(src.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let (start, end) = match src.get(i)? {
        q @ (b'"' | b'\'') => {
            let len = src.get(i + 1..)?.iter().position(|b| b == q)?;
            let key = src.get(i + 1..i + 1 + len)?;
            if key.contains(&b'\\') || key.contains(&b'\n') {
                return None;
            }
            (i + 1, i + 1 + len)
        }
        _ => {
            let len = src
                .get(i..)?
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))?;
            (i, i + len)
        }
    };
    let key = src.get(start..end)?;
    // What follows the key must be a separator of a header.
    let mut j = if src.get(end).is_some_and(|b| *b == b'"' || *b == b'\'') {
        end + 1
    } else {
        end
    };
    while matches!(src.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    matches!(src.get(j), Some(b'.' | b']')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> usize {
        s.matches('\n').count()
    }

    #[test]
    fn package_tables_go_and_everything_else_stays_at_its_line() {
        let src = "[project]\nname = \"x\"\n\n[packages.a]\nsummary = \"a\"\nfiles = [\n  { src = \"a\", dst = \"/a\" },\n]\n\n[environments.dev]\nfrom = \"x\" # [packages.b]\n[[packages.a.extra]]\nk = 1\n[ \"packages\" . c ]\nk = 2\n[store]\nurl = \"s3://b/p\"\n[packages]\n";
        let out = without_tables(src, "packages");
        assert_eq!(lines(&out), lines(src));
        assert!(!out.contains("summary"));
        assert!(!out.contains("k = "));
        let kept: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            kept,
            [
                "[project]",
                "name = \"x\"",
                "[environments.dev]",
                "from = \"x\" # [packages.b]",
                "[store]",
                "url = \"s3://b/p\"",
            ]
        );
        // Kept lines are at their own line numbers.
        let at = |s: &str, l: &str| s.lines().position(|x| x == l);
        assert_eq!(at(&out, "[store]"), at(src, "[store]"));
    }

    #[test]
    fn brackets_in_strings_and_arrays_are_not_headers() {
        let src = "[packages.a]\ndescription = \"\"\"\n[store]\nurl = 1\n\"\"\"\nlist = [\n[1, 2],\n]\nlit = '''\n[project]\n'''\nq = \"\"\"ends with quotes\"\"\"\"\"\nr = '''[store]'''''\n[project]\nname = \"x\"\n";
        let out = without_tables(src, "packages");
        assert_eq!(lines(&out), lines(src));
        assert_eq!(out.trim_start_matches('\n'), "[project]\nname = \"x\"\n");
    }

    #[test]
    fn a_store_only_load_reads_no_package_and_places_errors_at_their_line() {
        use crate::model::Inputs;
        let ok = "[project]\nname = \"x\"\nversion = \"1.0\"\n\n[packages.a]\nsummary = 3\nbogus = true\n\n[environments.dev]\n\n[images.web]\nbase = \"scratch\"\npackages = [\"nope\"]\n";
        let dir = std::path::Path::new("/nonexistent");
        let file = std::path::Path::new("pipeline.toml");
        // The broken package is not looked at, nor the image's reference.
        let p = super::super::parse(file, dir, ok, Inputs::StoreOnly).unwrap();
        assert!(p.packages.is_empty());
        assert_eq!(p.environments.len(), 1);
        assert!(super::super::parse(file, dir, ok, Inputs::Check).is_err());
        // An error after the package tables is reported at its own line.
        let bad = format!("{ok}\n[store]\nurl = 5\n");
        let e = super::super::parse(file, dir, &bad, Inputs::StoreOnly).unwrap_err();
        let lines: Vec<usize> = e.iter().map(|d| d.line).collect();
        assert_eq!(lines, [bad.lines().count()], "{e}");
    }

    #[test]
    fn what_does_not_scan_is_left_whole() {
        for src in [
            "[packages.a]\nx = \"open\n[project]\n",
            "[packages.a]\nx = [1,\n",
            "[packages.a]\nx = \"\"\"never closed\n",
            "[packages.a]\nx = ]\n",
        ] {
            assert_eq!(without_tables(src, "packages"), src, "{src:?}");
        }
        // No package table: the same text, not a copy.
        assert!(matches!(
            without_tables("[project]\n", "packages"),
            Cow::Borrowed(_)
        ));
        // A key that only starts with the word is not skipped.
        let src = "[packagesx]\na = 1\n[\"pack\\u0061ges\".b]\nc = 1\n";
        assert_eq!(without_tables(src, "packages"), src);
    }
}
