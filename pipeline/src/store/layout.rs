//! Names of the objects in a store. Every key pipe writes is built here, so the
//! layout of a store can be read in one place; no other module formats a key
//! (the records that live under these keys are in [`crate::records`]).

/// The root object: `{ "format": 1, ... }`. Written once, create-only, by the
/// first write to a store; read by every open.
pub const ROOT: &str = "pipe-store.json";

/// Where content-addressed blobs live.
pub(crate) const BLOBS: &str = "blobs/blake3/";

/// The public keyring `pipe keys rotate` publishes (for people: deploy never
/// trusts a key found in the store).
pub(crate) const KEYRING: &str = "keys/keyring.asc";

/// The prefix every published build is under (`builds/<id>/...`).
pub(crate) const BUILDS: &str = "builds/";

/// The prefix every environment's pointer and history is under
/// (`envs/<env>/...`).
pub(crate) const ENVS: &str = "envs/";

/// The build a key under [`BUILDS`] belongs to.
pub(crate) fn build_of(key: &str) -> Option<&str> {
    key.strip_prefix(BUILDS)?.split('/').next()
}

/// The environment a key under [`ENVS`] belongs to.
pub(crate) fn env_of(key: &str) -> Option<&str> {
    key.strip_prefix(ENVS)?.split('/').next()
}

/// The prefix of the shared package pool ([`pool`]).
pub(crate) const POOL: &str = "pool/";

/// The prefix of every apt suite ([`apt_suite`]).
const DISTS: &str = "dists/";

/// The prefix of every yum repository ([`yum_repo`]).
pub(crate) const YUM: &str = "yum/";

/// Where a yum repository has its package copies ([`yum_package_href`]).
const YUM_PACKAGES: &str = "Packages/";

/// The one apt component pipe publishes.
pub(crate) const APT_COMPONENT: &str = "main";

/// The key of the blob whose BLAKE3 digest is `blake3_hex` (64 lowercase hex
/// digits): `blobs/blake3/<first 2 hex>/<64 hex>`. The two-digit fan-out keeps
/// directories of a local store small.
pub(crate) fn blob_key(blake3_hex: &str) -> String {
    let fan = blake3_hex.get(..2).unwrap_or(blake3_hex);
    format!("{BLOBS}{fan}/{blake3_hex}")
}

/// The prefix of every cache record ([`step_record`], [`stage_record`]).
pub(crate) const CACHE: &str = "cache/";

/// `cache/steps/<key>.json`: a build step's outputs, by the step's cache key.
pub(crate) fn step_record(cache_key: &str) -> String {
    format!("cache/steps/{cache_key}.json")
}

/// `cache/stages/<key>.json`: an artifact stage's outputs, by its cache key.
pub(crate) fn stage_record(cache_key: &str) -> String {
    format!("cache/stages/{cache_key}.json")
}

/// Where the version records of an older pipe are
/// (`packages/<artifact file name>.json`), read once into the package
/// catalog ([`catalog_root`]).
pub(crate) const LEGACY_VERSION_RECORDS: &str = "packages/";

/// True for the key of an older pipe's version record.
pub(crate) fn is_legacy_version_record(key: &str) -> bool {
    key.strip_prefix(LEGACY_VERSION_RECORDS)
        .is_some_and(|name| {
            !name.contains('/') && name.ends_with(".json") && name != "catalog.json"
        })
}

/// `packages/catalog.json`: the root of the package catalog (which bytes
/// every published artifact name stands for), replaced by compare-and-swap
/// ([`crate::records::catalog`]).
pub(crate) fn catalog_root() -> String {
    format!("{LEGACY_VERSION_RECORDS}catalog.json")
}

/// `packages/catalog/<blake3>.json`: a shard of the package catalog, named
/// by its content.
pub(crate) fn catalog_shard(blake3_hex: &str) -> String {
    format!("{LEGACY_VERSION_RECORDS}catalog/{blake3_hex}.json")
}

/// `manifests/<first 2 hex>/<blake3>.json`: a shard of a build manifest
/// (`crate::records::manifest::Shard`), named by its content and shared
/// by every build whose manifest names it. The same relative path in a
/// local build directory.
pub fn manifest_shard(blake3_hex: &str) -> String {
    let fan = blake3_hex.get(..2).unwrap_or(blake3_hex);
    format!("{MANIFEST_SHARDS}{fan}/{blake3_hex}.json")
}

/// The prefix of every manifest shard ([`manifest_shard`]).
pub(crate) const MANIFEST_SHARDS: &str = "manifests/";

/// `builds/<id>/<file>`: a published build's manifest, provenance, their
/// signatures and its package index.
pub(crate) fn build_file(build: &str, file: &str) -> String {
    format!("{BUILDS}{build}/{file}")
}

/// `envs/<env>/pointer.json`: an environment's newest signed history entry.
pub(crate) fn pointer(env: &str) -> String {
    format!("{ENVS}{env}/pointer.json")
}

/// `envs/<env>/timestamp.json`: the signed statement that an environment's
/// head is current, until when ([`crate::records::history::Freshness`]).
pub(crate) fn freshness(env: &str) -> String {
    format!("{ENVS}{env}/timestamp.json")
}

/// The prefix every history entry of `env` is under.
pub(crate) fn history_prefix(env: &str) -> String {
    format!("{ENVS}{env}/history/")
}

/// `envs/<env>/history/<seq>.json`, `seq` zero-padded to 8 digits so keys
/// list in order.
pub(crate) fn history_entry(env: &str, seq: u64) -> String {
    format!("{}{seq:08}.json", history_prefix(env))
}

/// `views/<env>/<view>.json`: what a consumer view of `env` was last
/// generated from, and who is generating it (the record a regeneration's
/// conditional writes go through).
pub(crate) fn view_state(env: &str, view: &str) -> String {
    format!("views/{env}/{view}.json")
}

/// `pool/main/<l>/<package>/<file>`: where a package lives in the shared
/// pool (`lib` packages under their first four letters, as Debian's
/// archive does).
pub(crate) fn pool(package: &str, file: &str) -> String {
    let fan = if package.starts_with("lib") && package.len() > 3 {
        &package[..4]
    } else {
        package.get(..1).unwrap_or("_")
    };
    format!("{POOL}{APT_COMPONENT}/{fan}/{package}/{file}")
}

/// `dists/<env>`: the apt suite of `env`.
pub(crate) fn apt_suite(env: &str) -> String {
    format!("{DISTS}{env}")
}

/// A content-addressed apt index file of `env`'s suite.
pub(crate) fn apt_by_hash(env: &str, index_dir: &str, sha256: &str) -> String {
    format!("{}/{index_dir}/by-hash/SHA256/{sha256}", apt_suite(env))
}

/// `yum/<env>`: the yum repository of `env`.
pub(crate) fn yum_repo(env: &str) -> String {
    format!("{YUM}{env}")
}

/// A file of `env`'s yum repository (`repodata/...`, `Packages/...`).
pub(crate) fn yum_file(env: &str, href: &str) -> String {
    format!("{}/{href}", yum_repo(env))
}

/// Where a yum repository has the .rpm `artifact`, relative to its base
/// URL: `Packages/h/hello-1.2.0-1.x86_64.rpm` (the layout of Fedora's
/// repositories), so a mirror that copies a repository by its base URL
/// (`dnf reposync`) gets every package.
pub(crate) fn yum_package_href(artifact: &str) -> String {
    let fan = artifact
        .chars()
        .next()
        .map_or('_', |c| c.to_ascii_lowercase());
    format!("{YUM_PACKAGES}{fan}/{artifact}")
}

/// How long a cache in front of the store (a CDN, a caching proxy) may serve
/// an object without asking the store again: what the object's key says it
/// is. The S3 backend sends it as `Cache-Control` on every write
/// ([`http_headers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectClass {
    /// Named by its content (blobs, manifest and catalog shards, apt
    /// `by-hash` files, checksum-named yum data) or never rewritten with other bytes (pool files and the yum
    /// repository's package copies, whose names carry name, version and
    /// architecture, pinned by their version record): cached for a year,
    /// never revalidated.
    Immutable,
    /// Replaced in place (`InRelease`, `Release*`, `repomd.xml*`, plain
    /// `Packages*`, pointers, history, records, views' state): a cache may
    /// keep a copy but asks the store (a conditional request on the ETag)
    /// before every use, so a host never reads a suite older than the
    /// store's, and a pair read together (`repomd.xml` and its `.asc`) is
    /// never mixed across generations by the cache.
    Mutable,
}

impl ObjectClass {
    /// The `Cache-Control` value for objects of this class.
    pub(crate) fn cache_control(self) -> &'static str {
        match self {
            ObjectClass::Immutable => "public, max-age=31536000, immutable",
            ObjectClass::Mutable => "no-cache",
        }
    }
}

/// The class of the object at `key` (a key this module builds). Anything
/// not known to be immutable is [`ObjectClass::Mutable`]: a wrong guess that
/// way costs a revalidation, the other way a stale repository.
pub(crate) fn object_class(key: &str) -> ObjectClass {
    let immutable = key.starts_with(BLOBS)
        || key.starts_with(MANIFEST_SHARDS)
        || key.starts_with(&format!("{LEGACY_VERSION_RECORDS}catalog/"))
        || key.starts_with(POOL)
        || (key.starts_with(DISTS) && key.contains("/by-hash/"))
        || yum_data_is_checksum_named(key)
        || key
            .strip_prefix(YUM)
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_env, href)| href.starts_with(YUM_PACKAGES));
    if immutable {
        ObjectClass::Immutable
    } else {
        ObjectClass::Mutable
    }
}

/// `yum/<env>/repodata/<64 hex>-<kind>.<ext>`: the data files `repomd.xml`
/// names by their SHA-256.
fn yum_data_is_checksum_named(key: &str) -> bool {
    let Some(name) = key
        .strip_prefix(YUM)
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_env, href)| href.strip_prefix("repodata/"))
    else {
        return false;
    };
    name.split_once('-')
        .is_some_and(|(sum, _)| sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Content-Type` of the object at `key`, from its name. Blobs and
/// `by-hash` copies do not name their format: `application/octet-stream`.
pub(crate) fn content_type(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    if key.starts_with(DISTS) && key.contains("/by-hash/") {
        return "application/octet-stream";
    }
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("deb") => "application/vnd.debian.binary-package",
        Some("rpm") => "application/x-rpm",
        Some("gz") => "application/gzip",
        Some("xz") => "application/x-xz",
        Some("zst") => "application/zstd",
        Some("bz2") => "application/x-bzip2",
        Some("xml") => "application/xml",
        Some("gpg") => "application/pgp-signature",
        Some("asc") if key == KEYRING => "application/pgp-keys",
        Some("asc") => "application/pgp-signature",
        _ if matches!(name, "InRelease" | "Release" | "Packages") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The HTTP headers an object at `key` is stored with: `Cache-Control`
/// (from [`object_class`]) and `Content-Type` (from [`content_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpHeaders {
    /// `Cache-Control`.
    pub(crate) cache_control: &'static str,
    /// `Content-Type`.
    pub(crate) content_type: &'static str,
}

/// The headers of the object at `key`.
pub(crate) fn http_headers(key: &str) -> HttpHeaders {
    HttpHeaders {
        cache_control: object_class(key).cache_control(),
        content_type: content_type(key),
    }
}

/// The signed pointer to the machine image `machine` promoted to `env`:
/// what an autoscaler reads (`machines/NAME/ENV.json`).
pub(crate) fn machine_pointer(machine: &str, env: &str) -> String {
    format!("machines/{machine}/{env}.json")
}

/// The same pointer clearsigned (`machines/NAME/ENV.json.asc`): one object,
/// so a reader never pairs a new document with an old signature.
pub(crate) fn machine_pointer_signed(machine: &str, env: &str) -> String {
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

    #[test]
    fn content_addressed_objects_are_immutable_the_rest_revalidated() {
        let sum = "ab".repeat(32);
        let immutable = [
            blob_key(&sum),
            manifest_shard(&sum),
            catalog_shard(&sum),
            pool("hello", "hello_1.0_all.deb"),
            apt_by_hash("dev", "main/binary-all", &sum),
            yum_file("dev", &format!("repodata/{sum}-primary.xml.gz")),
            yum_file("dev", &yum_package_href("hello-1.0-1.noarch.rpm")),
        ];
        for key in &immutable {
            assert_eq!(object_class(key), ObjectClass::Immutable, "{key}");
            assert_eq!(
                http_headers(key).cache_control,
                "public, max-age=31536000, immutable"
            );
        }
        let mutable = [
            format!("{}/InRelease", apt_suite("dev")),
            format!("{}/Release", apt_suite("dev")),
            format!("{}/Release.gpg", apt_suite("dev")),
            format!("{}/main/binary-all/Packages.xz", apt_suite("dev")),
            yum_file("dev", "repodata/repomd.xml"),
            yum_file("dev", "repodata/repomd.xml.asc"),
            // Not checksum-named: a name that only looks like one.
            yum_file("dev", "repodata/abc-primary.xml.gz"),
            pointer("dev"),
            history_entry("dev", 1),
            view_state("dev", "apt"),
            catalog_root(),
            build_file("b-1", "manifest.json"),
            ROOT.to_string(),
            KEYRING.to_string(),
            machine_pointer("web", "prod"),
            machine_pointer_signed("web", "prod"),
        ];
        for key in &mutable {
            assert_eq!(object_class(key), ObjectClass::Mutable, "{key}");
            assert_eq!(http_headers(key).cache_control, "no-cache");
        }
    }

    #[test]
    fn content_types_follow_names() {
        let sum = "cd".repeat(32);
        let cases = [
            (blob_key(&sum), "application/octet-stream"),
            (
                pool("hello", "hello_1.0_all.deb"),
                "application/vnd.debian.binary-package",
            ),
            (
                apt_by_hash("dev", "main/binary-all", &sum),
                "application/octet-stream",
            ),
            ("dists/dev/InRelease".into(), "text/plain; charset=utf-8"),
            ("dists/dev/Release.gpg".into(), "application/pgp-signature"),
            (
                "dists/dev/main/binary-all/Packages".into(),
                "text/plain; charset=utf-8",
            ),
            (
                "dists/dev/main/binary-all/Packages.xz".into(),
                "application/x-xz",
            ),
            (yum_file("dev", "repodata/repomd.xml"), "application/xml"),
            (
                yum_file("dev", "repodata/repomd.xml.asc"),
                "application/pgp-signature",
            ),
            (
                yum_file("dev", &format!("repodata/{sum}-primary.xml.gz")),
                "application/gzip",
            ),
            (
                yum_file("dev", &yum_package_href("hello-1.0-1.noarch.rpm")),
                "application/x-rpm",
            ),
            (pointer("dev"), "application/json"),
            (KEYRING.into(), "application/pgp-keys"),
        ];
        for (key, ty) in cases {
            assert_eq!(content_type(&key), ty, "{key}");
        }
    }
}
