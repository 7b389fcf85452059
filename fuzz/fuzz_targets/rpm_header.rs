//! The rpm header reader the yum view's metadata comes from (the `rpm`
//! crate's `PackageMetadata`, as `kinds::rpm` reads a package).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As pipe reads a package: the headers' bounds first
    // (`stages::rpm::check_headers`), the crate only after.
    if stages::rpm::check_headers(&mut &data[..]).is_err() {
        return;
    }
    let mut r = data;
    if let Ok(meta) = rpm::PackageMetadata::parse(&mut r) {
        let _ = meta.get_name();
        let _ = meta.get_file_paths();
        let _ = meta.get_provides();
        let _ = meta.get_changelog_entries();
    }
});
