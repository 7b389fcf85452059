//! The `pipeline.toml` model.

/// Placeholder; replaced by the diagnostics module.
#[derive(Debug)]
pub struct Diagnostics;
impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid pipeline.toml")
    }
}
