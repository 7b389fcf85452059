//! The bounds of an rpm file's two headers, checked before the `rpm` crate
//! reads them.
//!
//! `rpm` 0.30 indexes a header's data with the offsets the file gives and
//! panics on one past the data's end (found by fuzzing; the inputs are in
//! `fuzz/known-crashes/`), and it allocates whatever data size the file
//! claims. The crate offers no checked reader, so this one walks the lead
//! and both headers (the layout of rpm's `lib/header.c`: a 16-byte intro
//! with magic, entry count and data size, 16-byte entries, then the data;
//! the signature header padded to 8 bytes) and refuses, with a reason, any
//! file whose entries would reach outside their header's data (a string
//! counted as at least its NUL), or whose counts exceed rpm's own limits.

use std::io::Read;

/// The lead before the headers.
const LEAD: usize = 96;
/// rpm's `HEADER_DATA_MAX` (`hdrchkData`): 256 MiB of data per header.
const MAX_DATA: u32 = 0x0fff_ffff;
/// rpm's `hdrchkTags`: at most 65,535 entries per header.
const MAX_ENTRIES: u32 = 0xffff;
const MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];

/// Checks the lead and both headers `reader` starts with; `Err` says what
/// is wrong. Reads the headers only (never the payload), at most twice
/// `MAX_DATA` plus the index.
pub fn check_headers(reader: &mut impl Read) -> Result<(), String> {
    let mut lead = [0u8; LEAD];
    reader
        .read_exact(&mut lead)
        .map_err(|e| format!("cannot read the rpm lead: {e}"))?;
    if lead[..4] != [0xed, 0xab, 0xee, 0xdb] {
        return Err("not an rpm file (no lead magic)".into());
    }
    let signature_data = check_header(reader, "signature header")?;
    let padding = u64::from((8 - signature_data % 8) % 8);
    let skipped = std::io::copy(&mut reader.by_ref().take(padding), &mut std::io::sink())
        .map_err(|e| format!("cannot read the signature header's padding: {e}"))?;
    if skipped != padding {
        return Err(format!(
            "the signature header's padding is cut short: {skipped} of {padding} bytes"
        ));
    }
    check_header(reader, "header")?;
    Ok(())
}

/// Checks one header; returns its data size.
fn check_header(reader: &mut impl Read, what: &str) -> Result<u32, String> {
    let mut intro = [0u8; 16];
    reader
        .read_exact(&mut intro)
        .map_err(|e| format!("cannot read the {what}: {e}"))?;
    let [
        m0,
        m1,
        m2,
        _version,
        _,
        _,
        _,
        _,
        n0,
        n1,
        n2,
        n3,
        d0,
        d1,
        d2,
        d3,
    ] = intro;
    if [m0, m1, m2] != MAGIC {
        return Err(format!("the {what} has no header magic"));
    }
    let entries = u32::from_be_bytes([n0, n1, n2, n3]);
    let data = u32::from_be_bytes([d0, d1, d2, d3]);
    if entries > MAX_ENTRIES {
        return Err(format!(
            "the {what} claims {entries} entries, more than rpm's limit of {MAX_ENTRIES}"
        ));
    }
    if data > MAX_DATA {
        return Err(format!(
            "the {what} claims {data} bytes of data, more than rpm's limit of {MAX_DATA}"
        ));
    }
    let mut index = vec![0u8; entries as usize * 16];
    reader
        .read_exact(&mut index)
        .map_err(|e| format!("cannot read the {what}'s {entries} entries: {e}"))?;
    for (i, entry) in index.chunks_exact(16).enumerate() {
        let field = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(entry.get(at..at + 4).unwrap_or(&[0; 4]));
            u32::from_be_bytes(b)
        };
        let (tag, kind, offset, count) = (field(0), field(4), field(8), field(12));
        // Fixed-size types occupy `count` items of their size; strings
        // (6, 8, 9) start at `offset` and are searched for their NULs by
        // the crate, inside the data; null (0) occupies nothing.
        let item: u64 = match kind {
            0 | 6 | 8 | 9 => 0,
            1 | 2 | 7 => 1,
            3 => 2,
            4 => 4,
            5 => 8,
            other => {
                return Err(format!(
                    "entry {i} (tag {tag}) of the {what} has type {other}, which rpm does not define"
                ));
            }
        };
        // A string takes at least its NUL: `count` strings need `count`
        // bytes (the crate sizes its vectors by `count`, so an unbounded
        // one is an allocation of any size: found by fuzzing too).
        let end = u64::from(offset) + item.max(u64::from(kind != 0)) * u64::from(count);
        if u64::from(offset) > u64::from(data) || end > u64::from(data) {
            return Err(format!(
                "entry {i} (tag {tag}) of the {what} reaches byte {end} from offset {offset}, outside the header's {data} bytes of data"
            ));
        }
    }
    std::io::copy(
        &mut reader.by_ref().take(u64::from(data)),
        &mut std::io::sink(),
    )
    .map_err(|e| format!("cannot read the {what}'s data: {e}"))
    .and_then(|n| {
        if n == u64::from(data) {
            Ok(data)
        } else {
            Err(format!(
                "the {what}'s data ends after {n} of its {data} bytes"
            ))
        }
    })
}
