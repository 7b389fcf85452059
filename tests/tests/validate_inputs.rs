//! `pipe validate` rejects, with file:line:column and all at once,
//! everything about inputs that `pipe build` would reject later: an
//! absolute `src`, a `src` leaving the project, a symlink leaving the
//! project, a file name with a newline, a FIFO, and a step `inputs` glob
//! that matches nothing. And it warns, naming the section and its line, that
//! `[images]` and `[machines]` are not built yet.

use pipe_e2e::cli::Project;

const BAD: &str = r#"[project]
name = "demo"
version = "1.0.0"

[steps.gen]
run = "mkdir -p gen && touch gen/x"
inputs = ["templates/*.in"]
outputs = ["gen/"]

[packages.absolute]
summary = "A"
maintainer = "Demo <demo@example.com>"
arch = "all"
files = [{ src = "/etc/hostname", dst = "/usr/share/a/hostname" }]

[packages.upward]
summary = "U"
maintainer = "Demo <demo@example.com>"
arch = "all"
files = [{ src = "../outside.txt", dst = "/usr/share/u/outside.txt" }]

[packages.linked]
summary = "L"
maintainer = "Demo <demo@example.com>"
arch = "all"
files = [{ src = "linked/", dst = "/usr/share/l/" }]

[packages.newline]
summary = "N"
maintainer = "Demo <demo@example.com>"
arch = "all"
files = [{ src = "newline/", dst = "/usr/share/n/" }]

[packages.fifo]
summary = "F"
maintainer = "Demo <demo@example.com>"
arch = "all"
files = [{ src = "fifo/", dst = "/usr/share/f/" }]
"#;

/// 1-based line and column of the first `needle` in `BAD`.
fn at(needle: &str) -> String {
    at_in(BAD, needle)
}

/// 1-based line and column of the first `needle` in `toml`.
fn at_in(toml: &str, needle: &str) -> String {
    let i = toml
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {toml}"));
    let line = toml[..i].matches('\n').count() + 1;
    let column = i - toml[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("pipeline.toml:{line}:{column}")
}

#[test]
fn validate_rejects_what_build_would_reject_with_positions_all_at_once() {
    let p = Project::new();
    p.write("pipeline.toml", BAD)
        .write("linked/ok.txt", "ok\n")
        .write("newline/ok.txt", "ok\n")
        .write("fifo/ok.txt", "ok\n");
    std::os::unix::fs::symlink("/etc/passwd", p.path().join("linked/passwd")).unwrap();
    std::fs::write(p.path().join("newline/two\nlines"), "x\n").unwrap();
    let fifo = std::ffi::CString::new(p.path().join("fifo/pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

    let run = p.pipe_here(&["validate"]);
    run.expect_code(2);
    let err = &run.stderr;
    for (needle, what) in [
        ("\"templates/*.in\"", "matches no file"),
        ("\"/etc/hostname\"", "absolute"),
        ("\"../outside.txt\"", "leaves the project"),
        ("\"linked/\"", "passwd"),
        ("\"newline/\"", "two"),
        ("\"fifo/\"", "pipe"),
    ] {
        let position = at(needle);
        let block = err
            .split("error: ")
            .find(|b| b.contains(&format!("--> {position}")))
            .unwrap_or_else(|| panic!("no error at {position} ({needle}) in:\n{err}"));
        assert!(
            block.contains(what),
            "{needle}: expected {what:?} in:\n{block}"
        );
        assert!(block.contains("hint:"), "{block}");
    }
    // The build refuses them too (the same rules, later).
    let json = p.pipe(&["--json", "validate"]);
    json.expect_code(2);
    assert_eq!(
        json.json()["error"]["diagnostics"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

/// A glob that matches nothing now but names another step's outputs is
/// fine: those appear when that step runs.
#[test]
fn a_glob_over_another_steps_outputs_is_not_an_error() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        r#"[project]
name = "demo"
version = "1.0.0"

[steps.gen]
run = "mkdir -p gen && cp src/a.in gen/a"
inputs = ["src/*.in"]
outputs = ["gen/"]

[steps.use]
run = "mkdir -p out && cp gen/a out/a"
inputs = ["gen/**"]
outputs = ["out/"]
"#,
    )
    .write("src/a.in", "a\n");
    p.pipe(&["validate"]).expect_code(0);
}

/// Every section of the example is built now (packages, the image, the
/// machine): `validate` promises exactly what `build` makes and warns of
/// nothing.
#[test]
fn validate_of_the_example_lists_every_kind_and_warns_of_nothing() {
    let p = Project::example("hello");
    let run = p.pipe(&["validate"]);
    run.expect_code(0);
    assert!(!run.stdout.contains("warning:"), "{}", run.stdout);
    for kind in ["hello.oci.tar", "web.raw", "web.qcow2"] {
        assert!(run.stdout.contains(kind), "{kind} not in:\n{}", run.stdout);
    }
    let json = p.pipe(&["--json", "validate"]).expect_code(0).json();
    assert!(json["plan"]["not_built"].as_array().unwrap().is_empty());
}

/// `[store] url` is checked by the same parser `--store` goes through: a
/// prefix that `--store` refuses is refused in the file too, with its
/// position.
#[test]
fn the_store_url_in_the_file_follows_the_store_url_parser() {
    let p = Project::new();
    let toml = "[project]\nname = \"demo\"\nversion = \"1.0.0\"\n\n[store]\nurl = \"s3://ok-bucket/a/../b\"\n";
    p.write("pipeline.toml", toml);
    let run = p.pipe_here(&["validate"]);
    run.expect_code(2);
    assert!(run.stderr.contains("pipeline.toml:6:7"), "{}", run.stderr);
    assert!(run.stderr.contains("prefix"), "{}", run.stderr);
    let flag = p.pipe(&["--store", "s3://ok-bucket/a/../b", "status"]);
    flag.expect_code(2);
}

const BUILT: &str = r#"[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[environments.dev]

[steps.gen]
run = "mkdir -p gen && cp templates/a.in gen/a"
inputs = ["templates/*.in"]
outputs = ["gen/"]

[packages.demo]
summary = "Demo"
maintainer = "Demo <demo@example.com>"
license = "MIT"
license_file = "LICENSE"
changelog = "CHANGES.md"
arch = "all"
formats = ["deb", "rpm"]
files = [
  { src = "demo.txt", dst = "/usr/share/demo/demo.txt" },
  { src = "share/", dst = "/usr/share/demo/share/" },
  { src = "gen/a", dst = "/usr/share/demo/a" },
]
"#;

/// Publish, promote, rollback, refresh, history and status read the store,
/// not the inputs: they work on a project whose input files were all
/// removed after the build, while validate and build still name each
/// missing one at its position.
#[test]
fn store_commands_work_with_the_inputs_gone_validate_and_build_name_them() {
    let p = Project::new();
    p.write("pipeline.toml", BUILT)
        .write("demo.txt", "one\n")
        .write("share/x.txt", "x\n")
        .write("templates/a.in", "a\n")
        .write("LICENSE", "Permission is granted.\n")
        .write("CHANGES.md", "## 1.0.0 - 2023-11-01\n- First.\n");
    p.with_signing_key();
    let build_now = || {
        p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = build_now();
    p.write("demo.txt", "two\n")
        .write("pipeline.toml", &BUILT.replace("1.0.0", "1.0.1"))
        .write(
            "CHANGES.md",
            "## 1.0.1 - 2023-11-02\n- Second.\n\n## 1.0.0 - 2023-11-01\n- First.\n",
        );
    let build = build_now();
    assert_ne!(first, build);
    let inputs = ["demo.txt", "share", "templates", "LICENSE", "CHANGES.md"];
    for gone in inputs {
        let path = p.path().join(gone);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    p.pipe(&["publish", &first]).expect_code(0);
    p.pipe(&["publish", &build]).expect_code(0);
    p.pipe(&["promote", &first, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &build, "--to", "dev"]).expect_code(0);
    p.pipe(&["rollback", "--env", "dev"]).expect_code(0);
    p.pipe(&["promote", &build, "--to", "dev"]).expect_code(0);
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    let history = p.pipe(&["--json", "history", "dev"]).expect_code(0).json();
    assert!(history.to_string().contains(&build), "{history}");
    let status = p.pipe(&["--json", "status"]).expect_code(0).json();
    assert!(status.to_string().contains(&build), "{status}");

    // validate and build: every missing input, at its position.
    for command in ["validate", "build"] {
        let run = p.pipe_here(&[command]);
        run.expect_code(2);
        for (needle, what) in [
            ("\"templates/*.in\"", "matches no file"),
            ("\"demo.txt\"", "does not exist"),
            ("\"share/\"", "does not exist"),
            ("\"LICENSE\"", "does not exist"),
            ("\"CHANGES.md\"", "does not exist"),
        ] {
            let position = at_in(BUILT, needle);
            let block = run
                .stderr
                .split("error: ")
                .find(|b| b.contains(&format!("--> {position}")))
                .unwrap_or_else(|| {
                    panic!(
                        "pipe {command}: no error at {position} ({needle}) in:\n{}",
                        run.stderr
                    )
                });
            assert!(block.contains(what), "{needle}: {what:?} in:\n{block}");
        }
    }
}
