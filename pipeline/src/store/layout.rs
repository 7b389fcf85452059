//! Names of the objects in a store. Every key pipe writes is built here, so the
//! layout of a store can be read in one place; no other module formats a key
//! (the records that live under these keys are in [`crate::records`]).

/// The root object: `{ "format": 1, ... }`. Written once, create-only, by the
/// first write to a store; read by every open.
pub const ROOT: &str = "pipe-store.json";

/// Where content-addressed blobs live.
pub const BLOBS: &str = "blobs/blake3/";

/// The public keyring `pipe keys rotate` publishes (for people: deploy never
/// trusts a key found in the store).
pub const KEYRING: &str = "keys/keyring.asc";

/// The prefix every published build is under (`builds/<id>/...`).
pub const BUILDS: &str = "builds/";

/// The prefix every environment's pointer and history is under
/// (`envs/<env>/...`).
pub const ENVS: &str = "envs/";

/// The build a key under [`BUILDS`] belongs to.
pub fn build_of(key: &str) -> Option<&str> {
    key.strip_prefix(BUILDS)?.split('/').next()
}

/// The environment a key under [`ENVS`] belongs to.
pub fn env_of(key: &str) -> Option<&str> {
    key.strip_prefix(ENVS)?.split('/').next()
}

/// The one apt component pipe publishes.
pub const APT_COMPONENT: &str = "main";

/// The key of the blob whose BLAKE3 digest is `blake3_hex` (64 lowercase hex
/// digits): `blobs/blake3/<first 2 hex>/<64 hex>`. The two-digit fan-out keeps
/// directories of a local store small.
pub fn blob_key(blake3_hex: &str) -> String {
    let fan = blake3_hex.get(..2).unwrap_or(blake3_hex);
    format!("{BLOBS}{fan}/{blake3_hex}")
}

/// `cache/steps/<key>.json`: a build step's outputs, by the step's cache key.
pub fn step_record(cache_key: &str) -> String {
    format!("cache/steps/{cache_key}.json")
}

/// `cache/stages/<key>.json`: an artifact stage's outputs, by its cache key.
pub fn stage_record(cache_key: &str) -> String {
    format!("cache/stages/{cache_key}.json")
}

/// `packages/<artifact file name>.json`: which bytes a published artifact
/// name stands for (the name carries name, version, architecture, format).
pub fn version_record(artifact: &str) -> String {
    format!("packages/{artifact}.json")
}

/// `builds/<id>/<file>`: a published build's manifest, provenance, their
/// signatures and its package index.
pub fn build_file(build: &str, file: &str) -> String {
    format!("{BUILDS}{build}/{file}")
}

/// `envs/<env>/pointer.json`: an environment's newest signed history entry.
pub fn pointer(env: &str) -> String {
    format!("{ENVS}{env}/pointer.json")
}

/// The prefix every history entry of `env` is under.
pub fn history_prefix(env: &str) -> String {
    format!("{ENVS}{env}/history/")
}

/// `envs/<env>/history/<seq>.json`, `seq` zero-padded to 8 digits so keys
/// list in order.
pub fn history_entry(env: &str, seq: u64) -> String {
    format!("{}{seq:08}.json", history_prefix(env))
}

/// `views/<env>/<view>.json`: what a consumer view of `env` was last
/// generated from, and who is generating it (the record a regeneration's
/// conditional writes go through).
pub fn view_state(env: &str, view: &str) -> String {
    format!("views/{env}/{view}.json")
}

/// `pool/main/<l>/<package>/<file>`: where a package lives in the shared
/// pool (`lib` packages under their first four letters, as Debian's
/// archive does).
pub fn pool(package: &str, file: &str) -> String {
    let fan = if package.starts_with("lib") && package.len() > 3 {
        &package[..4]
    } else {
        package.get(..1).unwrap_or("_")
    };
    format!("pool/{APT_COMPONENT}/{fan}/{package}/{file}")
}

/// `dists/<env>`: the apt suite of `env`.
pub fn apt_suite(env: &str) -> String {
    format!("dists/{env}")
}

/// A content-addressed apt index file of `env`'s suite.
pub fn apt_by_hash(env: &str, index_dir: &str, sha256: &str) -> String {
    format!("{}/{index_dir}/by-hash/SHA256/{sha256}", apt_suite(env))
}

/// `yum/<env>`: the yum repository of `env`.
pub fn yum_repo(env: &str) -> String {
    format!("yum/{env}")
}

/// A file of `env`'s yum repository (`repodata/...`, `Packages/...`).
pub fn yum_file(env: &str, href: &str) -> String {
    format!("{}/{href}", yum_repo(env))
}

/// Where a yum repository has the .rpm `artifact`, relative to its base
/// URL: `Packages/h/hello-1.2.0-1.x86_64.rpm` (the layout of Fedora's
/// repositories), so a mirror that copies a repository by its base URL
/// (`dnf reposync`) gets every package.
pub fn yum_package_href(artifact: &str) -> String {
    let fan = artifact
        .chars()
        .next()
        .map_or('_', |c| c.to_ascii_lowercase());
    format!("Packages/{fan}/{artifact}")
}

/// The signed pointer to the machine image `machine` promoted to `env`:
/// what an autoscaler reads (`machines/NAME/ENV.json`).
pub fn machine_pointer(machine: &str, env: &str) -> String {
    format!("machines/{machine}/{env}.json")
}

/// The same pointer clearsigned (`machines/NAME/ENV.json.asc`): one object,
/// so a reader never pairs a new document with an old signature.
pub fn machine_pointer_signed(machine: &str, env: &str) -> String {
    format!("machines/{machine}/{env}.json.asc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_key_fans_out_on_two_hex_digits() {
        let d = "ab".repeat(32);
        assert_eq!(blob_key(&d), format!("blobs/blake3/ab/{d}"));
    }

    #[test]
    fn keys_are_where_architecture_md_says() {
        assert_eq!(pointer("prod"), "envs/prod/pointer.json");
        assert_eq!(history_entry("prod", 7), "envs/prod/history/00000007.json");
        assert_eq!(pool("hello", "h.deb"), "pool/main/h/hello/h.deb");
        assert_eq!(pool("libfoo", "l.deb"), "pool/main/libf/libfoo/l.deb");
        assert_eq!(pool("lib", "l.deb"), "pool/main/l/lib/l.deb");
        assert_eq!(view_state("dev", "apt"), "views/dev/apt.json");
        assert_eq!(build_of(&build_file("b-1", "manifest.json")), Some("b-1"));
        assert_eq!(env_of(&pointer("prod")), Some("prod"));
        assert_eq!(
            apt_by_hash("dev", "main/binary-all", "ff"),
            "dists/dev/main/binary-all/by-hash/SHA256/ff"
        );
        assert_eq!(
            yum_file("dev", "repodata/x.xml.gz"),
            "yum/dev/repodata/x.xml.gz"
        );
    }
}
