//! The yum index reader: what `pipe publish` records of an .rpm for
//! `repodata` (`kinds::of(Rpm).describe`: the rpm header's name, version,
//! dependencies, files and changelog, rendered by
//! `repo_index::yum::render_package`), the fragment moved to its pool
//! location (`PackageXml::with_location`, which parses the fragment) and
//! the repository rendered from it (`render_repo`).
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use pipeline::artifact::{Artifact, ArtifactKind, Component};
use pipeline::records::index::Fragment;
use pipeline::store::BlobRef;
use repo_index::yum::{self, RepoConfig};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello-1.0-1.noarch.rpm");
    std::fs::write(&path, data).unwrap();
    let artifact = Artifact {
        name: "hello-1.0-1.noarch.rpm".into(),
        kind: ArtifactKind::Rpm,
        component: Component::Package("hello".into()),
        blob: BlobRef {
            blake3: "0".repeat(64),
            sha256: "0".repeat(64),
            size: data.len() as u64,
        },
        cache_key: String::new(),
    };
    let Ok(Some(Fragment::Rpm(r))) =
        pipeline::kinds::of(ArtifactKind::Rpm).describe(&path, &artifact, 1 << 30)
    else {
        return;
    };
    let Ok(xml) = r.xml.with_location("Packages/h/hello-1.0-1.noarch.rpm") else {
        return;
    };
    let config = RepoConfig {
        dir: "yum/prod".into(),
        timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30),
    };
    let _ = yum::render_repo(&config, &[&xml], None);
});
