//! The machine-image stage against real peers: a Debian base made by
//! mmdebstrap, dpkg installing into it, `e2fsck`, `debugfs` and `qemu-img`
//! reading the images, `xorriso` and `mtools` reading the seeds.

use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::consumers::{run, text};
use pipe_e2e::machine::{
    assert_images_sound, deb_tree, debian_base, debugfs_cat, debugfs_stat, dpkg_build, tiny_base,
};
use stages::machine::seed::{self, Seed, SeedFile, SeedImage};
use stages::machine::{self, Bake, DiskFormat, PackageFiles, Quiet};

const EPOCH: u64 = 1_700_000_000;

/// A `.deb` made with dpkg-deb: `/usr/bin/hello`, a config file, and a
/// postinst that leaves a mark, so the test sees maintainer scripts ran.
fn hello_deb(dir: &Path) -> PathBuf {
    let root = deb_tree(
        dir,
        "hello",
        "Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: Ops <ops@example.com>\nDescription: hello\n",
        &["usr/bin", "etc/hello"],
    );
    std::fs::write(root.join("DEBIAN/postinst"), "#!/bin/sh\nset -e\nmkdir -p /var/lib/hello\necho configured > /var/lib/hello/postinst-ran\n").unwrap();
    std::fs::write(root.join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::write(root.join("etc/hello/hello.conf"), "greeting=hi\n").unwrap();
    run(Command::new("chmod")
        .args(["0755"])
        .arg(root.join("DEBIAN/postinst"))
        .arg(root.join("usr/bin/hello")));
    dpkg_build(&root, dir.join("hello_1.0_all.deb"), EPOCH)
}

const POST_INSTALL: &str = "#!/bin/sh
set -e
echo baked > /etc/baked-by-post-install
echo 'post-install says hi'
# Things generalisation must remove: a bake host leaves them behind.
mkdir -p /etc/ssh /etc/udev/rules.d /root
echo key > /etc/ssh/ssh_host_rsa_key
echo 'SUBSYSTEM==net' > /etc/udev/rules.d/70-persistent-net.rules
echo history > /root/.bash_history
echo junk > /tmp/junk
echo 0123456789abcdef0123456789abcdef > /etc/machine-id
";

fn bake_in(
    dir: &Path,
    base: &Path,
    packages: Vec<PackageFiles>,
    script: Option<PathBuf>,
    size: u64,
) -> Bake {
    Bake {
        name: "web".into(),
        base: base.to_path_buf(),
        packages,
        post_install: script,
        size,
        formats: vec![DiskFormat::Raw, DiskFormat::Qcow2],
        epoch: EPOCH,
        identity: "test-identity".into(),
        work_dir: dir.join("work"),
        out_dir: dir.join("out"),
        tool_path: None,
    }
}

fn debian_bake(dir: &Path) -> Bake {
    let deb = hello_deb(dir);
    let script = dir.join("bake.sh");
    std::fs::write(&script, POST_INSTALL).unwrap();
    bake_in(
        dir,
        &debian_base(),
        vec![PackageFiles {
            name: "hello".into(),
            deb: Some(deb),
            rpm: None,
        }],
        Some(script),
        512 << 20,
    )
}

fn out_is_empty(b: &Bake) {
    let left: Vec<_> = std::fs::read_dir(&b.out_dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a failed bake left {left:?} in the output directory"
    );
    let work: Vec<_> = std::fs::read_dir(&b.work_dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        work.is_empty(),
        "a failed bake left {work:?} in the work directory"
    );
}

#[test]
fn debian_base_bakes_with_dpkg_post_install_and_generalisation() {
    let dir = tempfile::tempdir().unwrap();
    let b = debian_bake(dir.path());
    let baked = machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{e}\nhint: {:?}", e.hint()));
    assert_eq!(baked.manager, Some(machine::PackageManager::Dpkg));
    let raw = b.out_dir.join("web.raw");
    let qcow2 = b.out_dir.join("web.qcow2");
    assert_eq!(
        baked
            .images
            .iter()
            .map(|i| i.path.clone())
            .collect::<Vec<_>>(),
        vec![raw.clone(), qcow2.clone()]
    );
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 512 << 20);
    assert_images_sound(Some(&raw), Some(&qcow2));

    // The package's files, its maintainer script's effect, dpkg's database.
    assert_eq!(
        debugfs_cat(&raw, "/usr/bin/hello").unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        debugfs_cat(&raw, "/etc/hello/hello.conf").unwrap(),
        b"greeting=hi\n"
    );
    assert_eq!(
        debugfs_cat(&raw, "/var/lib/hello/postinst-ran").unwrap(),
        b"configured\n"
    );
    let status = String::from_utf8(debugfs_cat(&raw, "/var/lib/dpkg/status").unwrap()).unwrap();
    let hello = status
        .split("\n\n")
        .find(|s| s.starts_with("Package: hello\n"))
        .expect("hello in the image's dpkg status");
    assert!(hello.contains("Status: install ok installed"), "{hello}");
    assert!(
        debugfs_stat(&raw, "/usr/bin/hello")
            .unwrap()
            .contains("Mode:  0755"),
        "mode kept"
    );
    // The post-install script ran inside the root.
    assert_eq!(
        debugfs_cat(&raw, "/etc/baked-by-post-install").unwrap(),
        b"baked\n"
    );
    assert!(baked.post_install_output.contains("post-install says hi"));
    // The base's own files are there, with their owners.
    assert!(debugfs_cat(&raw, "/etc/debian_version").is_some());
    assert!(
        debugfs_stat(&raw, "/dev/null")
            .unwrap()
            .contains("character special"),
        "device node kept"
    );

    // Generalised.
    for gone in [
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/root/.bash_history",
        "/tmp/junk",
        "/.pipe-post-install.sh",
    ] {
        assert!(
            debugfs_stat(&raw, gone).is_none(),
            "{gone} is still in the image"
        );
    }
    assert_eq!(debugfs_cat(&raw, "/etc/machine-id").unwrap(), b"");
    for listed in [
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/root/.bash_history",
        "/tmp/junk",
        "/etc/machine-id (emptied)",
    ] {
        assert!(
            baked.removed.iter().any(|r| r == listed),
            "{listed} not in {:?}",
            baked.removed
        );
    }
    // Every time in the image is the epoch or older.
    let stat = debugfs_stat(&raw, "/etc/baked-by-post-install").unwrap();
    for field in ["ctime", "atime", "mtime", "crtime"] {
        let line = stat
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{field}:")))
            .unwrap();
        assert!(line.contains("0x6553f100"), "{field} not the epoch: {line}");
    }
}

#[test]
fn two_bakes_at_different_times_in_different_directories_are_byte_identical() {
    let one = tempfile::tempdir().unwrap();
    let b1 = debian_bake(one.path());
    machine::bake(&b1, &Quiet).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let two = tempfile::tempdir().unwrap();
    let mut b2 = debian_bake(two.path());
    // The same inputs, found at different paths.
    b2.base = two.path().join("base-copy.tar.gz");
    std::fs::copy(&b1.base, &b2.base).unwrap();
    machine::bake(&b2, &Quiet).unwrap();
    for f in ["web.raw", "web.qcow2"] {
        let a = std::fs::read(b1.out_dir.join(f)).unwrap();
        let b = std::fs::read(b2.out_dir.join(f)).unwrap();
        if a != b {
            let keep = std::env::temp_dir().join("pipe-machine-nondeterministic");
            let _ = std::fs::create_dir_all(&keep);
            std::fs::copy(b1.out_dir.join(f), keep.join(format!("1-{f}"))).unwrap();
            std::fs::copy(b2.out_dir.join(f), keep.join(format!("2-{f}"))).unwrap();
            panic!(
                "{f} differs between two bakes of the same inputs (kept in {})",
                keep.display()
            );
        }
    }
}

#[test]
fn tiny_base_without_package_manager_bakes_and_generalises() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let b = bake_in(dir.path(), &base, vec![], None, 16 << 20);
    let baked = machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(baked.manager, None);
    let raw = b.out_dir.join("web.raw");
    assert_images_sound(Some(&raw), Some(&b.out_dir.join("web.qcow2")));
    assert_eq!(
        baked.removed,
        [
            "/etc/machine-id (emptied)",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "/etc/udev/rules.d/70-persistent-net.rules",
            "/home/ann/.python_history",
            "/root/.bash_history",
            "/tmp/junk",
            "/var/tmp/junk2",
        ]
    );
    assert_eq!(
        debugfs_cat(&raw, "/etc/ssh/sshd_config").unwrap(),
        b"PermitRootLogin no\n"
    );
    assert_eq!(debugfs_cat(&raw, "/home/ann/notes.txt").unwrap(), b"kept\n");
    assert_eq!(
        debugfs_cat(&raw, "/srv/a file \"\"quoted\"\"").unwrap(),
        b"odd name\n"
    );
    assert!(
        debugfs_stat(&raw, "/srv/data-link")
            .unwrap()
            .contains("Links: 2"),
        "hard link kept"
    );
    assert!(debugfs_stat(&raw, "/etc/udev/rules.d/60-other.rules").is_some());
    // Listing packages for it is refused: nothing could record them.
    let deb = hello_deb(dir.path());
    let b = bake_in(
        dir.path(),
        &base,
        vec![PackageFiles {
            name: "hello".into(),
            deb: Some(deb),
            rpm: None,
        }],
        None,
        16 << 20,
    );
    std::fs::remove_dir_all(&b.out_dir).unwrap();
    let e = machine::bake(&b, &Quiet).unwrap_err();
    assert!(
        e.to_string().contains("carries neither dpkg") && e.to_string().contains("`hello`"),
        "{e}"
    );
    out_is_empty(&b);
}

#[test]
fn failing_post_install_shows_its_output_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.sh");
    std::fs::write(&script, "echo 'about to fail' >&2\nexit 3\n").unwrap();
    let b = bake_in(dir.path(), &debian_base(), vec![], Some(script), 512 << 20);
    let e = machine::bake(&b, &Quiet).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("post-install script")
            && msg.contains("about to fail")
            && msg.contains("exit status: 3"),
        "{msg}"
    );
    out_is_empty(&b);
}

#[test]
fn size_too_small_names_the_size_needed() {
    let dir = tempfile::tempdir().unwrap();
    let b = bake_in(dir.path(), &debian_base(), vec![], None, 64 << 20);
    let e = machine::bake(&b, &Quiet).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("disk size 64M is too small") && msg.contains("needs at least"),
        "{msg}"
    );
    let stages::Error::DiskTooSmall { needed, .. } = e else {
        panic!("{e:?}")
    };
    out_is_empty(&b);
    // The size it names is enough.
    let b = Bake { size: needed, ..b };
    machine::bake(&b, &Quiet)
        .unwrap_or_else(|e| panic!("the needed size {needed} did not fit: {e}"));
    assert_images_sound(Some(&b.out_dir.join("web.raw")), None);
}

fn tar_with(dir: &Path, name: &str, entries: &[(&str, tar::EntryType, Option<&str>)]) -> PathBuf {
    let path = dir.join(name);
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (n, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(EPOCH);
        h.set_size(if *kind == tar::EntryType::Regular {
            3
        } else {
            0
        });
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        // Written raw: `set_path` refuses `..`, which is what is tested.
        let bytes = n.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        let body: &[u8] = if *kind == tar::EntryType::Regular {
            b"x\n\n"
        } else {
            b""
        };
        b.append(&h, body).unwrap();
    }
    b.finish().unwrap();
    path
}

#[test]
fn bases_that_are_not_root_filesystems_or_escape_the_root_are_refused() {
    use tar::EntryType::*;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let not_tar = d.join("random.tar.gz");
    std::fs::write(&not_tar, b"this is not an archive at all").unwrap();
    let oci = tar_with(
        d,
        "oci.tar",
        &[("oci-layout", Regular, None), ("index.json", Regular, None)],
    );
    let dotdot = tar_with(
        d,
        "dotdot.tar",
        &[("etc/", Directory, None), ("../escaped", Regular, None)],
    );
    let hardlink = tar_with(
        d,
        "hardlink.tar",
        &[
            ("etc/", Directory, None),
            ("etc/shadow-copy", Link, Some("../../etc/shadow")),
        ],
    );
    let through = tar_with(
        d,
        "through.tar",
        &[
            ("etc/", Directory, None),
            ("etc/out", Symlink, Some("/tmp")),
            ("etc/out/planted", Regular, None),
        ],
    );
    // Compressed bases are decompressed on a thread of their own: a stream
    // cut short, and an entry refused while that thread still runs.
    let gzip = |tar: &Path, name: &str, keep: Option<usize>| {
        let out = d.join(name);
        let o = run(Command::new("gzip").arg("-c").arg(tar));
        let mut bytes = o.stdout;
        if let Some(n) = keep {
            assert!(
                bytes.len() > n,
                "{} gzips to {} bytes",
                tar.display(),
                bytes.len()
            );
            bytes.truncate(n);
        }
        std::fs::write(&out, bytes).unwrap();
        out
    };
    let big = tiny_base(d);
    let cut = gzip(&big, "cut.tar.gz", Some(600));
    let dotdot_gz = gzip(&dotdot, "dotdot.tar.gz", None);
    for (base, expect) in [
        (
            &not_tar,
            "is not a root filesystem tarball: it is not a tar archive",
        ),
        (&cut, "it cannot be read as a tar archive"),
        (&dotdot_gz, "refusing entry `../escaped`"),
        (
            &oci,
            "is not a root filesystem tarball: it has no `etc/` directory and no shell",
        ),
        (&dotdot, "refusing entry `../escaped`"),
        (&hardlink, "refusing entry `etc/shadow-copy`"),
        (&through, "refusing entry `etc/out/planted`"),
    ] {
        let case = tempfile::tempdir().unwrap();
        let b = bake_in(case.path(), base, vec![], None, 16 << 20);
        let e = machine::bake(&b, &Quiet).unwrap_err();
        assert!(e.to_string().contains(expect), "{}: {e}", base.display());
        assert!(e.hint().is_some());
        out_is_empty(&b);
    }
    assert!(!Path::new("/tmp/planted").exists() && !d.join("escaped").exists());
}

#[test]
fn missing_tools_are_named_with_their_debian_packages() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // Every tool but qemu-img and debugfs.
    for t in ["mke2fs", "chroot", "dpkg"] {
        let found = which(t);
        std::os::unix::fs::symlink(found, bin.join(t)).unwrap();
    }
    let base = tiny_base(dir.path());
    let mut b = bake_in(dir.path(), &base, vec![], None, 16 << 20);
    b.tool_path = Some(bin.into_os_string());
    let e = machine::bake(&b, &Quiet).unwrap_err();
    assert_eq!(
        e.to_string(),
        "required tools not found on PATH: `debugfs` (Debian package `e2fsprogs`), `qemu-img` (Debian package `qemu-utils`)"
    );
    assert!(
        e.hint()
            .unwrap()
            .contains("apt-get install e2fsprogs qemu-utils"),
        "{:?}",
        e.hint()
    );
    out_is_empty(&b);
}

fn which(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(d).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is not installed: run scripts/install-deps.sh test");
}

fn seed_fixture() -> Seed {
    Seed {
        instance_id: "pipe-0123abcd-staging".into(),
        hostname: Some("web".into()),
        files: vec![
            SeedFile {
                path: "/etc/hello/env.conf".into(),
                content: b"environment=staging\nport=8080\n".to_vec(),
                mode: 0o644,
                owner: "root:root".into(),
            },
            SeedFile {
                path: "/etc/hello/secret".into(),
                content: vec![0, 159, 146, 150],
                mode: 0o600,
                owner: "root:root".into(),
            },
        ],
        epoch: EPOCH,
    }
}

#[test]
fn seed_iso_and_vfat_hold_the_rendered_files_and_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_fixture();
    let mut images = Vec::new();
    for round in 0..2 {
        let sd = dir.path().join(format!("seed{round}"));
        seed::write_dir(&seed, &sd).unwrap();
        let iso = dir.path().join(format!("seed{round}.iso"));
        let vfat = dir.path().join(format!("seed{round}.vfat"));
        seed::write_image(&seed, &sd, SeedImage::Iso, &iso).unwrap();
        seed::write_image(&seed, &sd, SeedImage::Vfat, &vfat).unwrap();
        images.push((std::fs::read(&iso).unwrap(), std::fs::read(&vfat).unwrap()));
        if round == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    }
    assert!(images[0] == images[1], "two seeds of the same files differ");

    let user_data = seed::user_data(&seed);
    // ISO: volume id and both files, read back by xorriso.
    let iso = dir.path().join("seed0.iso");
    let pvd = run(Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .args(["-pvd_info"]));
    assert!(
        text(&pvd).contains("Volume Id    : cidata"),
        "{}",
        text(&pvd)
    );
    let ex = dir.path().join("iso-out");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&ex));
    assert_eq!(
        std::fs::read_to_string(ex.join("user-data")).unwrap(),
        user_data
    );
    assert_eq!(
        std::fs::read_to_string(ex.join("meta-data")).unwrap(),
        seed::meta_data(&seed)
    );
    // vfat: label and files, read back by mtools.
    let vfat = dir.path().join("seed0.vfat");
    let label = run(Command::new("mlabel")
        .args(["-s", "-i"])
        .arg(&vfat)
        .arg("::")
        .env("MTOOLS_SKIP_CHECK", "1"));
    assert!(text(&label).contains("CIDATA"), "{}", text(&label));
    let ud = run(Command::new("mtype")
        .args(["-i"])
        .arg(&vfat)
        .arg("::user-data")
        .env("MTOOLS_SKIP_CHECK", "1"));
    assert_eq!(String::from_utf8(ud.stdout).unwrap(), user_data);
    // The cloud-config carries the rendered text and the binary file.
    assert!(
        user_data.contains("content: \"environment=staging\\nport=8080\\n\""),
        "{user_data}"
    );
    assert!(
        user_data.contains("encoding: b64\n  content: AJ+Slg=="),
        "{user_data}"
    );
}

/// Every inode in use in `image` (links > 0) with its change time as
/// `debugfs stat <N>` prints it (`0x6553f100`), for each inode number the
/// filesystem has.
fn inode_ctimes(image: &Path) -> Vec<(u32, String)> {
    let stats = run(Command::new("debugfs").args(["-R", "stats"]).arg(image));
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    let count: u32 = stats
        .lines()
        .find_map(|l| l.strip_prefix("Inode count:"))
        .unwrap_or_else(|| panic!("no inode count in {stats}"))
        .trim()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cmds = dir.path().join("cmds");
    let text: String = (1..=count).map(|i| format!("stat <{i}>\n")).collect();
    std::fs::write(&cmds, text).unwrap();
    let o = run(Command::new("debugfs").arg("-f").arg(&cmds).arg(image));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut found = Vec::new();
    for block in out.split("\nInode: ").skip(1) {
        let ino: u32 = block
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap();
        let links: u32 = block
            .split("Links: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        if links == 0 {
            continue;
        }
        let ctime = block
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("ctime: "))
            .and_then(|r| r.split([':', ' ']).next())
            .unwrap_or_else(|| panic!("no ctime for inode {ino}: {block}"))
            .to_string();
        found.push((ino, ctime));
    }
    found
}

#[test]
fn every_inode_has_the_epoch_as_change_time_whether_numbered_or_named() {
    // The tiny base: `mke2fs -d` numbers the tree's inodes one after the
    // other, and the change times are set by inode number.
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let b = bake_in(dir.path(), &base, vec![], None, 16 << 20);
    machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    let raw = b.out_dir.join("web.raw");
    assert_images_sound(Some(&raw), None);
    let ctimes = inode_ctimes(&raw);
    assert!(ctimes.len() > 20, "{ctimes:?}");
    let wrong: Vec<_> = ctimes.iter().filter(|(_, c)| c != "0x6553f100").collect();
    assert!(
        wrong.is_empty(),
        "inodes with another change time: {wrong:?}"
    );

    // A symlink with two hard links: `mke2fs -d` makes two inodes of it,
    // so the numbers are not the tree's count and every path is named
    // instead; the result is the same.
    let two = tempfile::tempdir().unwrap();
    let path = two.path().join("linked-symlink.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut add = |name: &str, kind: tar::EntryType, body: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(EPOCH + 1000);
        h.set_size(body.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_path(name).unwrap();
        h.set_cksum();
        t.append(&h, body).unwrap();
    };
    use tar::EntryType::*;
    add("./", Directory, b"", None);
    add("./etc/", Directory, b"", None);
    add("./bin/", Directory, b"", None);
    add("./bin/sh", Regular, b"#!\n", None);
    add("./bin/dash", Symlink, b"", Some("sh"));
    add("./bin/ash", Link, b"", Some("./bin/dash"));
    t.finish().unwrap();
    let b = bake_in(two.path(), &path, vec![], None, 16 << 20);
    machine::bake(&b, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    let raw = b.out_dir.join("web.raw");
    assert_images_sound(Some(&raw), None);
    for name in ["/bin/dash", "/bin/ash"] {
        assert!(
            debugfs_stat(&raw, name).unwrap().contains("Type: symlink"),
            "{name}"
        );
    }
    let ctimes = inode_ctimes(&raw);
    assert!(ctimes.len() >= 8, "{ctimes:?}");
    let wrong: Vec<_> = ctimes.iter().filter(|(_, c)| c != "0x6553f100").collect();
    assert!(
        wrong.is_empty(),
        "inodes with another change time: {wrong:?}"
    );
}
