//! Extended attributes and file capabilities in baked images, against real
//! tools: `setcap` (libcap2-bin) sets capabilities, GNU tar `--xattrs
//! --format=pax` packs them as mmdebstrap does, `debugfs ea_list`/`ea_get`
//! reads them back from the image, `e2fsck -fn` checks it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::consumers::{run, text, try_run};
use pipe_e2e::machine::{assert_images_sound, deb_tree, debian_base, debugfs_cat, dpkg_build};
use stages::machine::{self, Bake, DiskFormat, PackageFiles, Quiet};

const EPOCH: u64 = 1_700_000_000;

fn bake_in(dir: &Path, base: &Path, packages: Vec<PackageFiles>, script: Option<PathBuf>) -> Bake {
    // The Debian base needs room; the small trees fit in 16 MiB.
    let size = if packages.is_empty() {
        16 << 20
    } else {
        512 << 20
    };
    Bake {
        name: "web".into(),
        base: base.to_path_buf(),
        packages,
        post_install: script,
        size,
        formats: vec![DiskFormat::Raw, DiskFormat::Qcow2],
        epoch: EPOCH,
        identity: "xattr-identity".into(),
        work_dir: dir.join("work"),
        out_dir: dir.join("out"),
        tool_path: None,
    }
}

/// `lgetxattr(2)` on the host: what the tool set.
fn host_xattr(path: &Path, name: &str) -> Vec<u8> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid strings and a buffer of `buf.len()` bytes.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "{name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    buf
}

fn host_set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid strings and a buffer of `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "{name}: {}", std::io::Error::last_os_error());
}

/// The attribute names of `path` in the image, in their on-disk order
/// (`debugfs -R 'ea_list PATH'`).
fn image_xattr_names(image: &Path, path: &str) -> Vec<String> {
    let o = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("ea_list \"{path}\""))
        .arg(image));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, rest) = l.split_once(" (")?;
            rest.contains(") = ").then(|| name.to_string())
        })
        .collect()
}

/// One attribute's value in the image (`debugfs -R 'ea_get -f OUT PATH
/// NAME'`; a name with a space given in double quotes); `None` when it has
/// none of that name.
fn image_xattr(image: &Path, path: &str, name: &str) -> Option<Vec<u8>> {
    let bare = name.trim_matches('"');
    if !image_xattr_names(image, path).iter().any(|n| n == bare) {
        return None;
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    std::fs::remove_file(out.path()).unwrap();
    let o = try_run(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!(
                "ea_get -f {} \"{path}\" {name}",
                out.path().display()
            ))
            .arg(image),
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::read(out.path()).ok()
}

/// A tree that passes for a root filesystem (no program in it runs), with
/// `ping` given `cap_net_raw` by `setcap`, a file with three attributes and
/// a directory with one; the attributes of `several` are set in `order`.
fn xattr_tree(dir: &Path, order: &[&str]) -> PathBuf {
    let root = dir.join("tree");
    for d in ["etc", "usr/bin", "srv/data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("usr/bin/sh"), "#!not a shell\n").unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=xattr\n").unwrap();
    std::fs::write(root.join("usr/bin/ping"), "#!ping\n").unwrap();
    std::fs::write(root.join("srv/several"), "three attributes\n").unwrap();
    run(Command::new("chmod")
        .arg("0755")
        .arg(root.join("usr/bin/ping")));
    run(Command::new("setcap")
        .arg("cap_net_raw=ep")
        .arg(root.join("usr/bin/ping")));
    for name in order {
        let value: &[u8] = match *name {
            "security.capability" => {
                run(Command::new("setcap")
                    .arg("cap_net_bind_service=+ep")
                    .arg(root.join("srv/several")));
                continue;
            }
            "user.pipe.a" => b"first",
            "trusted.pipe" => b"\x00\x01binary\xff",
            other => panic!("no value for {other}"),
        };
        host_set_xattr(&root.join("srv/several"), name, value);
    }
    host_set_xattr(&root.join("srv/data"), "user.pipe.dir", b"a directory");
    root
}

/// GNU tar of `root` as mmdebstrap packs a base: pax, with `--xattrs`.
fn pax_tarball(root: &Path, out: &Path) {
    run(Command::new("tar")
        .args([
            "--xattrs",
            "--format=pax",
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--mtime=@1600000000",
            "--pax-option=delete=atime,delete=ctime",
            "-C",
        ])
        .arg(root)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

#[test]
fn base_xattrs_and_capabilities_reach_the_image_in_one_order() {
    let mut images = Vec::new();
    let mut tars = Vec::new();
    let orders: [&[&str]; 2] = [
        &["user.pipe.a", "security.capability", "trusted.pipe"],
        &["trusted.pipe", "user.pipe.a", "security.capability"],
    ];
    let keep = tempfile::tempdir().unwrap();
    for (i, order) in orders.iter().enumerate() {
        let dir = keep.path().join(format!("run-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let root = xattr_tree(&dir, order);
        let tarball = dir.join("base.tar");
        pax_tarball(&root, &tarball);
        // The tarball carries them as pax records, in the order set.
        let listing = run(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
            .arg(&tarball));
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert!(
            listing.contains("security.capability"),
            "GNU tar kept no capability:\n{listing}"
        );
        tars.push((root, tarball.clone()));
        let b = bake_in(&dir, &tarball, vec![], None);
        machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{e}"));
        images.push(b.out_dir.clone());
    }
    let raw = images[0].join("web.raw");
    assert_images_sound(Some(&raw), Some(&images[0].join("web.qcow2")));
    let (root, _) = &tars[0];
    assert_eq!(
        image_xattr(&raw, "/usr/bin/ping", "security.capability").as_deref(),
        Some(&host_xattr(&root.join("usr/bin/ping"), "security.capability")[..]),
        "ping's capability reached the image"
    );
    for name in ["security.capability", "trusted.pipe", "user.pipe.a"] {
        assert_eq!(
            image_xattr(&raw, "/srv/several", name).as_deref(),
            Some(&host_xattr(&root.join("srv/several"), name)[..]),
            "{name}"
        );
    }
    assert_eq!(
        image_xattr(&raw, "/srv/data", "user.pipe.dir").as_deref(),
        Some(&b"a directory"[..])
    );
    assert_eq!(
        image_xattr_names(&raw, "/srv/several"),
        ["security.capability", "trusted.pipe", "user.pipe.a"],
        "in name order whatever order they were set in"
    );
    assert_eq!(
        debugfs_cat(&raw, "/srv/several").unwrap(),
        b"three attributes\n"
    );
    for f in ["web.raw", "web.qcow2"] {
        assert!(
            std::fs::read(images[0].join(f)).unwrap() == std::fs::read(images[1].join(f)).unwrap(),
            "{f} differs between two bases that set the same attributes in different orders"
        );
    }
}

#[test]
fn an_xattr_the_kernel_refuses_fails_the_bake_naming_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-xattr.tar");
    // No namespace `nonsense.` exists: Linux refuses it.
    base_with_records(&path, &[("SCHILY.xattr.nonsense.attr", &b"x"[..])]);
    let bake = bake_in(dir.path(), &path, vec![], None);
    let e = machine::bake(&bake, &Quiet).unwrap_err().to_string();
    assert!(
        e.contains("nonsense.attr") && e.contains("etc/file"),
        "the error names the attribute and the file: {e}"
    );
    for d in [&bake.out_dir, &bake.work_dir] {
        let left: Vec<_> = std::fs::read_dir(d)
            .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "a failed bake left {left:?} in {}",
            d.display()
        );
    }
}

/// A `.deb` (dpkg-deb) carrying the host's `setcap` (libcap2-bin; the base
/// has its library, libcap2) and `/usr/bin/web-server`.
fn setcap_deb(dir: &Path) -> PathBuf {
    let root = deb_tree(
        dir,
        "setcap",
        "Package: web-server\nVersion: 1.0\nArchitecture: amd64\nMaintainer: Ops <ops@example.com>\nDescription: a server and setcap\n",
        &["usr/sbin", "usr/bin"],
    );
    let host = ["/usr/sbin/setcap", "/sbin/setcap"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("setcap is not installed: scripts/install-deps.sh machine (libcap2-bin)");
    std::fs::copy(host, root.join("usr/sbin/setcap")).unwrap();
    std::fs::write(root.join("usr/bin/web-server"), "#!/bin/sh\necho serving\n").unwrap();
    run(Command::new("chmod")
        .arg("0755")
        .arg(root.join("usr/sbin/setcap"))
        .arg(root.join("usr/bin/web-server")));
    dpkg_build(&root, dir.join("web-server_1.0_amd64.deb"), EPOCH)
}

#[test]
fn a_capability_the_post_install_sets_reaches_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let deb = setcap_deb(dir.path());
    let script = dir.path().join("caps.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nsetcap cap_net_bind_service=+ep /usr/bin/web-server\n",
    )
    .unwrap();
    let b = bake_in(
        dir.path(),
        &debian_base(),
        vec![PackageFiles {
            name: "web-server".into(),
            deb: Some(deb),
            rpm: None,
        }],
        Some(script),
    );
    machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    let raw = b.out_dir.join("web.raw");
    assert_images_sound(Some(&raw), Some(&b.out_dir.join("web.qcow2")));
    // What the same setcap writes on the host.
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "x").unwrap();
    run(Command::new("setcap")
        .arg("cap_net_bind_service=+ep")
        .arg(&probe));
    let expected = host_xattr(&probe, "security.capability");
    assert_eq!(
        image_xattr(&raw, "/usr/bin/web-server", "security.capability"),
        Some(expected),
        "the post-install's capability is in the image"
    );
    assert_eq!(
        image_xattr(&raw, "/usr/sbin/setcap", "security.capability"),
        None,
        "and only where it was set"
    );
}

/// A tree like [`xattr_tree`] whose `srv/odd` has attributes with names
/// libarchive URL-encodes (`=`, `%`, a space) and a value with a NUL byte.
fn odd_names_tree(dir: &Path) -> PathBuf {
    let root = xattr_tree(dir, &["user.pipe.a", "security.capability", "trusted.pipe"]);
    std::fs::write(root.join("srv/odd"), "odd names\n").unwrap();
    host_set_xattr(&root.join("srv/odd"), "user.a=b%c d", b"\x00binary=%\xff");
    host_set_xattr(&root.join("srv/odd"), "user.plain", b"plain");
    root
}

/// `bsdtar --xattrs` of `root` (pax), with its `xattrheader` option: `ALL`
/// (its default: a `LIBARCHIVE.xattr.` and a `SCHILY.xattr.` record for each
/// attribute) or `LIBARCHIVE` alone.
fn bsdtar_tarball(root: &Path, out: &Path, header: &str) {
    let o = try_run(
        Command::new("bsdtar")
            .args(["--xattrs", "--format=pax", "--numeric-owner"])
            .arg("--options")
            .arg(format!("pax:xattrheader={header}"))
            .arg("-cf")
            .arg(out)
            .arg("-C")
            .arg(root)
            .arg("."),
    );
    assert!(
        o.status.success(),
        "bsdtar (scripts/install-deps.sh machine: libarchive-tools) failed: {}",
        text(&o)
    );
}

/// The pax record keys of `tarball` that carry attributes, as bsdtar wrote
/// them.
fn xattr_record_keys(tarball: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(tarball).unwrap());
    let mut keys = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(records) = e.pax_extensions().unwrap() {
            for r in records {
                let k = r.unwrap().key().unwrap().to_string();
                if k.contains("xattr.") {
                    keys.push(k);
                }
            }
        }
    }
    keys
}

#[test]
fn a_bsdtar_base_libarchive_xattr_records_reach_the_image() {
    let keep = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for header in ["ALL", "LIBARCHIVE"] {
        let dir = keep.path().join(header);
        std::fs::create_dir_all(&dir).unwrap();
        let root = odd_names_tree(&dir);
        let tarball = dir.join("base.tar");
        bsdtar_tarball(&root, &tarball, header);
        let keys = xattr_record_keys(&tarball);
        // What bsdtar wrote: URL-encoded names, and beside each (ALL) a
        // SCHILY record whose name is URL-encoded too.
        assert!(
            keys.iter()
                .any(|k| k == "LIBARCHIVE.xattr.user.a%3Db%25c%20d"),
            "{keys:?}"
        );
        assert_eq!(
            keys.iter().any(|k| k.starts_with("SCHILY.xattr.")),
            header == "ALL",
            "{keys:?}"
        );
        let b = bake_in(&dir, &tarball, vec![], None);
        machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{header}: {e}"));
        let raw = b.out_dir.join("web.raw");
        assert_images_sound(Some(&raw), Some(&b.out_dir.join("web.qcow2")));
        assert_eq!(
            image_xattr(&raw, "/usr/bin/ping", "security.capability").as_deref(),
            Some(&host_xattr(&root.join("usr/bin/ping"), "security.capability")[..]),
            "{header}: ping's capability"
        );
        for name in ["security.capability", "trusted.pipe", "user.pipe.a"] {
            assert_eq!(
                image_xattr(&raw, "/srv/several", name).as_deref(),
                Some(&host_xattr(&root.join("srv/several"), name)[..]),
                "{header}: {name}"
            );
        }
        assert_eq!(
            image_xattr_names(&raw, "/srv/odd"),
            ["user.a=b%c d", "user.plain"],
            "{header}: the names decoded, and no URL-encoded duplicate"
        );
        assert_eq!(
            image_xattr(&raw, "/srv/odd", "\"user.a=b%c d\"").as_deref(),
            Some(&b"\x00binary=%\xff"[..]),
            "{header}: the value decoded"
        );
        assert_eq!(
            image_xattr(&raw, "/srv/odd", "user.plain").as_deref(),
            Some(&b"plain"[..])
        );
        outs.push(std::fs::read(&raw).unwrap());
    }
    assert!(
        outs[0] == outs[1],
        "the same attributes give the same image whichever records carry them"
    );
}

/// A base whose one file carries the pax records `records`.
fn base_with_records(path: &Path, records: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let add =
        |b: &mut tar::Builder<std::fs::File>, name: &str, kind: tar::EntryType, body: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(EPOCH);
            h.set_size(body.len() as u64);
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, body).unwrap();
        };
    add(&mut b, "./", tar::EntryType::Directory, b"");
    add(&mut b, "./etc/", tar::EntryType::Directory, b"");
    add(&mut b, "./bin/", tar::EntryType::Directory, b"");
    add(&mut b, "./bin/sh", tar::EntryType::Regular, b"#!\n");
    b.append_pax_extensions(records.iter().copied()).unwrap();
    add(&mut b, "./etc/file", tar::EntryType::Regular, b"data\n");
    b.finish().unwrap();
}

/// A case: its name, the pax records, and what the error says.
type Case = (
    &'static str,
    &'static [(&'static str, &'static [u8])],
    &'static str,
);

#[test]
fn malformed_or_contradictory_libarchive_xattr_records_fail_the_bake_and_leave_nothing() {
    let cases: [Case; 3] = [
        (
            "not-base64",
            &[("LIBARCHIVE.xattr.user.x", b"not base64!")],
            "not base64",
        ),
        (
            "bad-escape",
            &[("LIBARCHIVE.xattr.user.%zz", b"eA")],
            "malformed %-escape",
        ),
        (
            "two-values",
            &[
                ("LIBARCHIVE.xattr.user.x", b"eA"),
                ("SCHILY.xattr.user.x", b"y"),
            ],
            "two different values",
        ),
    ];
    for (name, records, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.tar"));
        base_with_records(&path, records);
        let bake = bake_in(dir.path(), &path, vec![], None);
        let e = machine::bake(&bake, &Quiet).unwrap_err().to_string();
        assert!(
            e.contains(says) && e.contains("etc/file") && e.contains("user."),
            "{name}: the error names the file and the attribute: {e}"
        );
        for d in [&bake.out_dir, &bake.work_dir] {
            let left: Vec<_> = std::fs::read_dir(d)
                .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{name}: a failed bake left {left:?}");
        }
    }
}
