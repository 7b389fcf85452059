//! Checks on what readers and writers report.

/// The first `n` bytes of `buf`, which a `read` or `write` just reported
/// handling: an error, not a panic, when an implementation reports more
/// than the buffer holds.
pub(crate) fn handled(buf: &[u8], n: usize) -> std::io::Result<&[u8]> {
    buf.get(..n).ok_or_else(|| {
        std::io::Error::other(format!(
            "a reader or writer reported {n} bytes handled, but its buffer holds {}",
            buf.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn more_than_the_buffer_is_an_error() {
        assert_eq!(super::handled(b"abc", 2).unwrap(), b"ab");
        let e = super::handled(b"abc", 4).unwrap_err();
        assert!(e.to_string().contains("reported 4 bytes"), "{e}");
    }
}
