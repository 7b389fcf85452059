//! `[deploy] files` templates: `{{ name }}` replaced by a value known at
//! deploy time. The syntax was checked when `pipeline.toml` was loaded; which
//! names exist is only known here.

use std::collections::BTreeMap;

use crate::template::{Piece, is_name, parse};
use crate::{Error, Result};

/// Names a template always has; `--set` may not redefine them.
pub(crate) const BUILTIN: [&str; 3] = ["env", "build", "version"];

/// The values templates see: the built-ins, then every `PIPE_VAR_NAME` of
/// `environ` as `NAME` (and lowercased, `name`, so `PIPE_VAR_PORT` fills
/// `{{ port }}`), then every `--set NAME=VALUE`, which wins.
pub(crate) fn values(
    builtin: [(&str, &str); 3],
    environ: impl IntoIterator<Item = (String, String)>,
    sets: &[(String, String)],
) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in environ {
        if let Some(name) = k.strip_prefix("PIPE_VAR_")
            && !name.is_empty()
        {
            out.insert(name.to_ascii_lowercase(), v.clone());
            out.insert(name.to_string(), v);
        }
    }
    for (k, v) in sets {
        if !is_name(k) {
            return Err(Error::Usage {
                message: format!("`--set {k}=...`: `{k}` is not a template name"),
                hint: Some("names are letters, digits and `_`, as in `{{ port }}`".into()),
            });
        }
        if BUILTIN.contains(&k.as_str()) {
            return Err(Error::Usage {
                message: format!("`--set {k}=...`: `{k}` is set by deploy itself"),
                hint: Some(format!("`{k}` comes from the environment's pointer")),
            });
        }
        out.insert(k.clone(), v.clone());
    }
    for (k, v) in builtin {
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Renders `text` (the template of `file`) with `values`; an unknown name is
/// a usage error naming the file and the name.
pub fn render(file: &str, text: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let pieces = parse(text).map_err(|e| {
        let (message, hint) = e.explain();
        Error::Usage {
            message: format!("template for `{file}`: {message}"),
            hint: Some(hint),
        }
    })?;
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Name(name) => match values.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(Error::Usage {
                        message: format!(
                            "template for `{file}` uses `{{{{ {name} }}}}`, which has no value"
                        ),
                        hint: Some(format!(
                            "pass `--set {name}=VALUE` or set `PIPE_VAR_{name}`; known: {}",
                            values.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    });
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_names_unknown_values() {
        let v = values(
            [("env", "prod"), ("build", "1-a"), ("version", "1")],
            [("PIPE_VAR_PORT".to_string(), "80".to_string())],
            &[("region".into(), "eu".into())],
        )
        .unwrap();
        assert_eq!(
            render("/f", "{{env}}:{{ port }}:{{ PORT }}:{{ region }}", &v).unwrap(),
            "prod:80:80:eu"
        );
        let err = render("/etc/x.conf", "a={{ nope }}", &v).unwrap_err();
        assert!(err.to_string().contains("`/etc/x.conf`"), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(
            values(
                [("env", ""), ("build", ""), ("version", "")],
                [],
                &[("env".into(), "x".into())]
            )
            .is_err()
        );
    }
}
