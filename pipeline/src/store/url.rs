//! Where a store lives: [`StoreUrl`], parsed from `s3://bucket/prefix` or a
//! directory path.

use std::fmt;
use std::path::{Path, PathBuf};

use super::key::validate_key;
use crate::{Error, Result};

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A directory on this machine (absolute).
    Local(PathBuf),
    /// A bucket, and a prefix inside it (no leading or trailing `/`; empty for
    /// the whole bucket).
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses `s3://bucket[/prefix]` or a directory path; a relative path is
    /// resolved against `base_dir`.
    pub fn parse(s: &str, base_dir: &Path) -> Result<StoreUrl> {
        let bad = |reason: &str| Error::StoreUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if s.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("the bucket name is missing"));
            }
            let valid_char =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
            if !(3..=63).contains(&bucket.len())
                || !bucket.chars().all(valid_char)
                || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            {
                return Err(bad(
                    "a bucket name is 3 to 63 characters: lowercase letters, digits, `-` and `.`, starting with a letter or digit",
                ));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                validate_key(prefix).map_err(|e| match e {
                    Error::InvalidKey { reason, .. } => bad(&format!("the prefix: {reason}")),
                    other => other,
                })?;
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(&format!(
                "the scheme `{scheme}://` is not supported (only `s3://` and directory paths)"
            )));
        }
        let path = Path::new(s);
        Ok(StoreUrl::Local(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        }))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Local(p) => write!(f, "{}", p.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let base = Path::new("/proj");
        assert_eq!(
            StoreUrl::parse(".pipe/store", base).unwrap(),
            StoreUrl::Local("/proj/.pipe/store".into())
        );
        assert_eq!(
            StoreUrl::parse("/abs", base).unwrap(),
            StoreUrl::Local("/abs".into())
        );
        let s3 = StoreUrl::parse("s3://my-bucket/a/b/", base).unwrap();
        assert_eq!(
            s3,
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://my-bucket/a/b");
        assert_eq!(
            StoreUrl::parse("s3://my-bucket", base).unwrap().to_string(),
            "s3://my-bucket"
        );
        for bad in [
            "",
            "s3://",
            "s3://B",
            "s3://-bucket",
            "s3://ok-bucket/a/../b",
            "gs://x/y",
        ] {
            assert!(
                matches!(StoreUrl::parse(bad, base), Err(Error::StoreUrl { .. })),
                "{bad}"
            );
        }
    }
}
