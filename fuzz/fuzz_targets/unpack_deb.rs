//! Deploy's unpacker on a .deb: the ar reader, the decompressors, the tar
//! entries, every check on names, links and modes. Writes only under a
//! temporary directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::deploy::unpack::{Format, Unpacker};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let u = Unpacker::new(dir.path());
    if u.unpack("fuzz.deb", Format::Deb, false, data).is_ok() {
        let _ = u.finish();
    }
});
