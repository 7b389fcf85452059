//! `pipe` under scripts and cron: one JSON document on every failure, usage
//! errors included; `-q` keeps the answer of query commands; structured
//! `--json status`; logs without colour unless a person is at a terminal;
//! the actor without `$USER`; a build whose S3 store does not answer; and
//! what `pipe rollback` tells hosts.

use pipe_e2e::cli::Project;
use pipe_e2e::fixture::Demo;

/// The demo project: dev, then prod.
fn demo() -> Demo {
    Demo::new().env("prod", Some("dev"))
}

fn project() -> Project {
    demo().create()
}

#[test]
fn json_usage_errors_are_one_document() {
    let p = demo().no_key().create();
    for args in [
        &["--json", "frobnicate"][..],
        &["--json", "promote"],
        &["promote", "--json", "--to"],
    ] {
        let run = p.pipe(args);
        run.expect_code(2);
        let doc = run.json();
        assert_eq!(doc["ok"], false, "{args:?}: {doc}");
        assert_eq!(doc["error"]["exit_code"], 2, "{args:?}: {doc}");
        assert!(doc["error"]["message"].is_string(), "{args:?}: {doc}");
        assert!(
            !run.stderr.is_empty(),
            "{args:?}: the person still reads it"
        );
    }
    // Without --json, stdout stays empty.
    let run = p.pipe(&["frobnicate"]);
    run.expect_code(2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn history_of_an_undeclared_or_invalid_environment_is_a_usage_error() {
    let p = demo().no_key().create();
    let run = p.pipe(&["history", "../x"]);
    run.expect_code(2);
    assert!(run.stderr.contains("not declared"), "{}", run.stderr);
    let run = p.pipe(&["history", "qa"]);
    run.expect_code(2);
    assert!(run.stderr.contains("not declared"), "{}", run.stderr);
    // Without pipeline.toml (`--store`), the name is still checked.
    let bare = Project::new();
    let store = bare.path().join("store");
    let run = bare.pipe(&["--store", store.to_str().unwrap(), "history", "../x"]);
    run.expect_code(2);
    assert!(run.stderr.contains("environment name"), "{}", run.stderr);
}

#[test]
fn quiet_keeps_answers_json_status_has_fields_and_the_actor_is_the_uid_name() {
    let mut p = project();
    // cron: neither $USER nor $LOGNAME.
    p.env("USER", "").env("LOGNAME", "").env("PIPE_ACTOR", "");
    let build = p.release("1.0.0");
    p.pipe(&["-q", "promote", &build, "--to", "dev"])
        .expect_code(0);

    let run = p.pipe(&["-q", "status"]);
    run.expect_code(0);
    assert!(run.stdout.contains(&build), "{}", run.stdout);
    let run = p.pipe(&["-q", "history", "dev"]);
    run.expect_code(0);
    assert!(run.stdout.contains(&build), "{}", run.stdout);
    let run = p.pipe(&["-q", "keys", "list"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Test Release"), "{}", run.stdout);
    // A command that only acts stays silent under -q.
    let run = p.pipe(&["-q", "promote", &build, "--to", "dev"]);
    run.expect_code(0);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let doc = p.pipe(&["--json", "status"]).expect_code(0).json();
    let dev = &doc["environments"][0];
    assert_eq!(dev["name"], "dev");
    assert_eq!(dev["build"], build.as_str(), "{doc}");
    assert_eq!(dev["seq"], 1, "{doc}");
    assert_eq!(dev["action"], "promote", "{doc}");
    assert!(dev["at"].as_str().unwrap().ends_with('Z'), "{doc}");
    assert_eq!(doc["environments"][1]["build"], serde_json::Value::Null);

    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let me = String::from_utf8(me.stdout).unwrap().trim().to_string();
    let actor = dev["actor"].as_str().unwrap();
    assert!(
        actor.starts_with(&format!("{me}@")),
        "{actor} (uid name {me})"
    );
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let p = demo().no_key().create();
    // stderr a pipe: plain text.
    // `validate` resolves the inputs, which logs at debug level (store
    // commands no longer touch inputs, so they may log nothing).
    let run = p.pipe(&["-vv", "validate"]);
    run.expect_code(0);
    assert!(run.stderr.contains("DEBUG"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);

    // A terminal (script(1) gives the command a pty): colour, unless NO_COLOR.
    let line = format!(
        "{} -C {} -vv validate",
        pipe_e2e::cli::pipe_bin().display(),
        p.path().display()
    );
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env_remove("PIPE_LOG")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("script(1) runs (util-linux)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_tty(None);
    assert!(coloured.contains("DEBUG"), "{coloured}");
    assert!(coloured.contains('\u{1b}'), "{coloured:?}");
    let plain = on_tty(Some("1"));
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
}

#[test]
fn a_build_whose_s3_store_does_not_answer_builds_locally_and_says_what_was_not_shared() {
    let mut p = demo()
        .store("url = \"s3://nobody-home/demo\"")
        .store("attempts = 1")
        .create();
    let port = pipe_e2e::s3::free_port();
    p.env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    let run = p.pipe(&["build"]);
    run.expect_code(0);
    assert!(run.stdout.contains("not shared"), "{}", run.stdout);
    // pipe's own warning is logged without -v; the AWS crates' are not.
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert!(
        run.stderr.contains("building with the local cache"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("WARN").count(), 1, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("127.0.0.1:{port}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("pipe publish"), "{}", run.stdout);
    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    assert_eq!(doc["not_shared"]["store"], "s3://nobody-home/demo", "{doc}");
    // The second build found its own work in the local cache.
    assert_eq!(doc["not_shared"]["artifacts_built"], 0, "{doc}");
    assert_eq!(doc["artifacts"][0]["cache"], "hit", "{doc}");
    let dir = doc["dir"].as_str().unwrap();
    assert!(std::path::Path::new(dir).join("manifest.json").is_file());
}

#[test]
fn rollback_says_how_apt_and_dnf_hosts_follow() {
    let p = project();
    let one = p.release("1.0.0");
    p.pipe(&["promote", &one, "--to", "dev"]).expect_code(0);
    let two = p.release("1.1.0");
    p.pipe(&["promote", &two, "--to", "dev"]).expect_code(0);
    let run = p.pipe(&["rollback", "--env", "dev"]);
    run.expect_code(0);
    for part in [
        "apt-get install --allow-downgrades demo=1.0.0",
        "/etc/apt/preferences.d/demo.pref",
        "Pin: release o=demo",
        "Pin-Priority: 1000",
        "dnf distro-sync demo",
    ] {
        assert!(run.stdout.contains(part), "{part}: {}", run.stdout);
    }
    let doc = p
        .pipe(&["--json", "rollback", "--env", "dev"])
        .expect_code(0)
        .json();
    assert!(
        doc["hosts"]["apt_install"]
            .as_str()
            .unwrap()
            .ends_with("demo=1.1.0"),
        "{doc}"
    );
}

#[test]
fn a_build_removes_staging_directories_of_builds_that_did_not_finish_and_only_those() {
    use std::os::fd::AsRawFd;
    let p = project();
    p.pipe(&["build"]).expect_code(0);
    let builds = p.path().join(".pipe/builds");
    let staging = |name: &str| {
        let d = builds.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("demo_1.0.0_all.deb"), vec![7u8; 1 << 20]).unwrap();
        d
    };
    // Killed: its lock file is there and nobody holds it.
    let killed = staging(".incoming-killed");
    std::fs::write(builds.join(".incoming-killed.lock"), "").unwrap();
    // Killed by an older pipe (no lock file), long ago.
    let old = staging(".incoming-old");
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    // A build running right now: its lock is held.
    let live = staging(".incoming-live");
    let held = std::fs::File::create(builds.join(".incoming-live.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    // Just created, its lock not taken yet.
    let fresh = staging(".incoming-fresh");

    p.pipe(&["build"]).expect_code(0);
    assert!(!killed.exists() && !builds.join(".incoming-killed.lock").exists());
    assert!(!old.exists());
    assert!(
        live.join("demo_1.0.0_all.deb").exists(),
        "a live build is left alone"
    );
    assert!(
        fresh.exists(),
        "a directory whose build may be starting is left alone"
    );
    // Nothing of this build's own staging is left behind.
    let left: Vec<String> = std::fs::read_dir(&builds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".incoming-"))
        .collect();
    assert_eq!(left.len(), 3, "live, its lock, and fresh remain: {left:?}");
    drop(held);
}
