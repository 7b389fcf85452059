//! The .deb reader (`stages::deb::DebReader`): the ar index, the control
//! text and the data member, decompressed (read with a cap).
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.deb");
    std::fs::write(&path, data).unwrap();
    let Ok(deb) = stages::deb::DebReader::open(&path) else {
        return;
    };
    let _ = deb.control();
    if let Ok(tar) = deb.tar("data.tar") {
        let _ = std::io::copy(&mut tar.take(1 << 24), &mut std::io::sink());
    }
});
