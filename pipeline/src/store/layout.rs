//! Names of the objects in a store. Every key pipe writes is built here, so the
//! layout of a store can be read in one place.

/// The root object: `{ "format": 1, ... }`. Written once, create-only, by the
/// first write to a store; read by every open.
pub const ROOT: &str = "pipe-store.json";

/// Where content-addressed blobs live.
pub const BLOBS: &str = "blobs/blake3/";

/// The key of the blob whose BLAKE3 digest is `blake3_hex` (64 lowercase hex
/// digits): `blobs/blake3/<first 2 hex>/<64 hex>`. The two-digit fan-out keeps
/// directories of a local store small.
pub fn blob_key(blake3_hex: &str) -> String {
    let fan = blake3_hex.get(..2).unwrap_or(blake3_hex);
    format!("{BLOBS}{fan}/{blake3_hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_key_fans_out_on_two_hex_digits() {
        let d = "ab".repeat(32);
        assert_eq!(blob_key(&d), format!("blobs/blake3/ab/{d}"));
    }
}
