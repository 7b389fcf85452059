//! The one cache-key builder: a blake3 digest over named, length-prefixed
//! fields, so no two different field lists hash the same bytes.

/// Accumulates the fields of a cache key.
pub(crate) struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    /// An empty key.
    pub(crate) fn new() -> KeyBuilder {
        KeyBuilder(blake3::Hasher::new())
    }

    /// Adds field `name` with `value`.
    pub(crate) fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.0.update(name.as_bytes());
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// The key: 64 lowercase hex digits.
    pub(crate) fn finish(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

impl Default for KeyBuilder {
    fn default() -> Self {
        KeyBuilder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let a = KeyBuilder::new().field("a", b"bc").finish();
        let b = KeyBuilder::new().field("ab", b"c").finish();
        assert_ne!(a, b);
        assert_eq!(a, KeyBuilder::new().field("a", b"bc").finish());
        assert_eq!(a.len(), 64);
    }
}
