//! The `pipeline.toml` loader: any text is a `Pipeline` or positioned
//! diagnostics, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = std::env::temp_dir();
    let _ = pipeline::model::Pipeline::from_source(
        &dir.join("pipeline.toml"),
        &dir.join("pipe-fuzz-nonexistent"),
        text,
    );
});
