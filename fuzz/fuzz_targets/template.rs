//! The `[deploy] files` template renderer: any template and values render
//! or fail with an error, never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, value) = text.split_once('\0').unwrap_or((text, "v"));
    let values: BTreeMap<String, String> = [
        ("env".to_string(), value.to_string()),
        ("build".to_string(), value.to_string()),
        ("port".to_string(), value.to_string()),
    ]
    .into_iter()
    .collect();
    let _ = pipeline::deploy::template::render("/etc/fuzz.conf", template, &values);
});
