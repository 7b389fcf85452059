//! Deploy's unpacker on an .rpm: the lead and header skipper, the
//! decompressors, the cpio newc reader (names and link targets capped),
//! every check on entries. Writes only under a temporary directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::deploy::unpack::{Format, Unpacker};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let u = Unpacker::new(dir.path());
    if u.unpack("fuzz.rpm", Format::Rpm, false, data).is_ok() {
        let _ = u.finish();
    }
});
