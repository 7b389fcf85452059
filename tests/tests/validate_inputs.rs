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
    let i = BAD
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in BAD"));
    let line = BAD[..i].matches('\n').count() + 1;
    let column = i - BAD[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
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

#[test]
fn validate_warns_about_sections_not_built_yet_with_their_line() {
    let p = Project::example("hello");
    let run = p.pipe(&["validate"]);
    run.expect_code(0);
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    // Images are built; machine images not yet.
    let line = toml.lines().position(|l| l == "[machines.web]").unwrap() + 1;
    let wanted = format!("warning: [machines.web] at line {line},");
    assert!(
        run.stdout.contains(&wanted),
        "{wanted} not in:\n{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("warning: [images.hello]"),
        "{}",
        run.stdout
    );
    let json = p.pipe(&["--json", "validate"]).expect_code(0).json();
    assert!(json["plan"]["not_built"][0]["line"].as_u64().is_some());
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
