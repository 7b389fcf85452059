//! The one template parser: `[deploy] files` text with `{{ name }}`
//! placeholders. `pipeline.toml` validation checks the syntax with it;
//! deploy renders with it (`deploy::template`), so the two can never accept
//! different things.

/// One piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// A placeholder's name, trimmed.
    Name(&'a str),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// `{{` without a `}}`.
    Unclosed,
    /// `{{ ... }}` whose content is not a name (the content as written).
    NotAName(String),
}

impl Syntax {
    /// A one-line message and a hint.
    pub(crate) fn explain(&self) -> (String, String) {
        match self {
            Syntax::Unclosed => (
                "`{{` is never closed".into(),
                "close the placeholder with `}}`".into(),
            ),
            Syntax::NotAName(inner) => (
                format!("`{{{{{inner}}}}}` is not a placeholder"),
                "placeholders are a name in double braces, e.g. `{{ env }}`".into(),
            ),
        }
    }
}

/// True for a placeholder or `--set` name: a letter or `_`, then letters,
/// digits and `_`.
pub(crate) fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `text` into literal text and placeholder names.
pub(crate) fn parse(text: &str) -> Result<Vec<Piece<'_>>, Syntax> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(Syntax::Unclosed)?;
        let name = after[..close].trim();
        if !is_name(name) {
            return Err(Syntax::NotAName(after[..close].to_string()));
        }
        out.push(Piece::Name(name));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_errors() {
        assert_eq!(
            parse("a={{ env }}\n{{x}}").unwrap(),
            [
                Piece::Text("a="),
                Piece::Name("env"),
                Piece::Text("\n"),
                Piece::Name("x")
            ]
        );
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("a {{ b").unwrap_err(), Syntax::Unclosed);
        assert_eq!(
            parse("{{ 1x }}").unwrap_err(),
            Syntax::NotAName(" 1x ".into())
        );
        assert_eq!(parse("{{}}").unwrap_err(), Syntax::NotAName(String::new()));
        assert!(is_name("_a1") && !is_name("a-b") && !is_name(""));
    }
}
