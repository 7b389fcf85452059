//! Diagnostics for `pipeline.toml`: every problem names the file, line and
//! column, shows the offending line with a caret under the bad part, and says
//! what to do. All problems of one run are collected and reported together.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// Byte range into the source text.
pub(crate) type Span = Range<usize>;

/// One problem found in `pipeline.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    /// What is wrong, in one lowercase sentence without a final period.
    pub message: String,
    /// 1-based line of the start of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the start of the offending text.
    pub column: usize,
    /// What to do about it.
    pub hint: Option<String>,
    #[serde(skip)]
    span: Span,
}

/// A place in `pipeline.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Every problem found in one `pipeline.toml`, with the source needed to show
/// them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    file: PathBuf,
    source: Arc<str>,
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collection for `file` whose text is `source`.
    pub(crate) fn new(file: impl Into<PathBuf>, source: impl Into<Arc<str>>) -> Self {
        Diagnostics {
            file: file.into(),
            source: source.into(),
            list: Vec::new(),
        }
    }

    /// Records a problem at `span`.
    pub(crate) fn error(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = line_column(&self.source, span.start);
        self.list.push(Diagnostic {
            message: message.into(),
            line,
            column,
            hint,
            span,
        });
    }

    /// Where `span` starts: 1-based line and column.
    pub(crate) fn position(&self, span: &Span) -> Position {
        let (line, column) = line_column(&self.source, span.start);
        Position { line, column }
    }

    /// The file the problems are in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The problems, in the order they appear in the file.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.list.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn sort(&mut self) {
        self.list
            .sort_by(|a, b| (a.span.start, &a.message).cmp(&(b.span.start, &b.message)));
        self.list
            .dedup_by(|a, b| a.span == b.span && a.message == b.message);
    }

    fn render_one(&self, d: &Diagnostic, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line_text = self.source.lines().nth(d.line - 1).unwrap_or("");
        let gutter = d.line.to_string().len();
        writeln!(f, "error: {}", d.message)?;
        writeln!(
            f,
            "{:gutter$}--> {}:{}:{}",
            "",
            self.file.display(),
            d.line,
            d.column
        )?;
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", d.line, line_text)?;
        // The caret covers the span, but never past the end of its first line.
        let start = d.span.start.min(self.source.len());
        let end = d.span.end.clamp(start, self.source.len());
        let covered = self.source[start..end].split('\n').next().unwrap_or("");
        let width = covered.chars().count().max(1);
        writeln!(
            f,
            "{:gutter$} | {:pad$}{}",
            "",
            "",
            "^".repeat(width),
            pad = d.column - 1
        )?;
        if let Some(hint) = &d.hint {
            writeln!(f, "{:gutter$} = hint: {}", "", hint)?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            self.render_one(d, f)?;
        }
        let n = self.list.len();
        write!(
            f,
            "\n{} error{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.file.display()
        )
    }
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_column(source: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(source.len());
    let before = &source[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..pos].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_column_caret_and_hint() {
        let src = "[project]\nnmae = \"x\"\n";
        let mut d = Diagnostics::new("pipeline.toml", src);
        d.error(
            10..14,
            "unknown key `nmae`",
            Some("did you mean `name`?".into()),
        );
        let text = d.to_string();
        assert_eq!(
            text,
            "error: unknown key `nmae`\n --> pipeline.toml:2:1\n  |\n2 | nmae = \"x\"\n  | ^^^^\n  = hint: did you mean `name`?\n\n1 error in pipeline.toml"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let src = "a = \"é\" # x\nb = 1";
        assert_eq!(line_column(src, src.find('#').unwrap()), (1, 9));
        assert_eq!(line_column(src, src.find('b').unwrap()), (2, 1));
    }
}
