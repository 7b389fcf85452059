//! The apt index reader: what `pipe publish` records of a .deb for the
//! `Packages` index (`kinds::of(Deb).describe`: the ar index, the control
//! member, `repo_index::apt::render_stanza` on its text) and the suite
//! rendered from that stanza (`render_suite`). An input starting with the ar
//! magic is a .deb; any other input is the control text itself, so the
//! stanza parser is reached without going through ar and tar.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use pipeline::artifact::{Artifact, ArtifactKind, Component};
use pipeline::records::index::Fragment;
use pipeline::store::BlobRef;
use repo_index::apt::{self, DebPackage, Entry, SuiteConfig};

fuzz_target!(|data: &[u8]| {
    let stanza = if data.starts_with(b"!<arch>\n") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello_1.0_all.deb");
        std::fs::write(&path, data).unwrap();
        let artifact = Artifact {
            name: "hello_1.0_all.deb".into(),
            kind: ArtifactKind::Deb,
            component: Component::Package("hello".into()),
            blob: BlobRef {
                blake3: "0".repeat(64),
                sha256: "0".repeat(64),
                size: data.len() as u64,
            },
            cache_key: String::new(),
        };
        match pipeline::kinds::of(ArtifactKind::Deb).describe(&path, &artifact, 0) {
            Ok(Some(Fragment::Deb(d))) => d.stanza,
            _ => return,
        }
    } else {
        let Ok(control) = std::str::from_utf8(data) else {
            return;
        };
        let package = DebPackage {
            control: control.to_string(),
            filename: "pool/main/h/hello/hello_1.0_all.deb".into(),
            size: data.len() as u64,
            md5: "0".repeat(32),
            sha1: None,
            sha256: "0".repeat(64),
        };
        match apt::render_stanza(&package) {
            Ok(s) => s,
            Err(_) => return,
        }
    };
    let config = SuiteConfig {
        architectures: vec!["amd64".into(), "arm64".into()],
        ..SuiteConfig::new("prod", SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30))
    };
    let entries = [Entry {
        component: "main",
        stanza: &stanza,
    }];
    let _ = apt::render_suite(&config, &entries, None);
});
