//! Build steps: run only when their command, env or inputs changed; outputs
//! kept in the store so another checkout sharing it restores instead of
//! running; failures show the stderr tail and store nothing.

use pipe_e2e::cli::Project;

const PIPELINE: &str = r#"[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[steps.compile]
run = "mkdir -p out && cat src/*.txt > out/all.txt && echo $SOURCE_DATE_EPOCH > out/epoch && echo ran >> runs.log"
inputs = ["src/*.txt"]
outputs = ["out/"]
"#;

fn project(store: &str) -> Project {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        &PIPELINE.replace("[steps", &format!("[store]\nurl = \"{store}\"\n\n[steps")),
    )
    .write("src/a.txt", "a\n")
    .write("src/b.txt", "b\n");
    p.with_signing_key();
    p
}

fn runs(p: &Project) -> usize {
    std::fs::read_to_string(p.path().join("runs.log")).map_or(0, |s| s.lines().count())
}

fn status(p: &Project) -> String {
    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    doc["steps"][0]["status"].as_str().unwrap().to_string()
}

#[test]
fn a_step_runs_once_per_input_digest() {
    let store = tempfile::tempdir().unwrap();
    let p = project(store.path().to_str().unwrap());
    assert_eq!(status(&p), "ran");
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/all.txt")).unwrap(),
        "a\nb\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/epoch")).unwrap(),
        "1700000000\n"
    );

    let run = p.pipe(&["build"]);
    run.expect_code(0);
    assert!(run.stdout.contains("step compile"), "{}", run.stdout);
    assert!(
        run.stdout.contains("cache hit: up to date, not run"),
        "{}",
        run.stdout
    );
    assert_eq!(runs(&p), 1);

    // Changing an input runs it again; changing it back is a cache hit.
    p.write("src/a.txt", "A\n");
    assert_eq!(status(&p), "ran");
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/all.txt")).unwrap(),
        "A\nb\n"
    );
    p.write("src/a.txt", "a\n");
    assert_eq!(status(&p), "restored");
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/all.txt")).unwrap(),
        "a\nb\n"
    );
    assert_eq!(runs(&p), 2);

    // A file the globs do not match changes nothing.
    p.write("README", "not an input\n");
    assert_eq!(status(&p), "up_to_date");
}

#[test]
fn another_checkout_sharing_the_store_restores_instead_of_running() {
    let store = tempfile::tempdir().unwrap();
    let first = project(store.path().to_str().unwrap());
    assert_eq!(status(&first), "ran");
    let second = project(store.path().to_str().unwrap());
    assert_eq!(status(&second), "restored");
    assert_eq!(
        runs(&second),
        0,
        "the command must not run on the second checkout"
    );
    assert_eq!(
        std::fs::read(second.path().join("out/all.txt")).unwrap(),
        std::fs::read(first.path().join("out/all.txt")).unwrap()
    );
}

#[test]
fn a_failing_step_shows_its_stderr_tail_and_stores_nothing() {
    let store = tempfile::tempdir().unwrap();
    let p = project(store.path().to_str().unwrap());
    p.write(
        "pipeline.toml",
        &std::fs::read_to_string(p.path().join("pipeline.toml"))
            .unwrap()
            .replace(
                "run = \"mkdir",
                "run = \"echo compiling >&2; echo 'error: missing semicolon' >&2; exit 3; mkdir",
            ),
    );
    let run = p.pipe(&["build"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("error: step `compile` exited with code 3"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("compiling\nerror: missing semicolon"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("step-compile.stderr"), "{}", run.stderr);
    let cached: Vec<_> = walk(store.path())
        .into_iter()
        .filter(|k| k.contains("cache/"))
        .collect();
    assert!(
        cached.is_empty(),
        "nothing may be stored for a failed step: {cached:?}"
    );
}

#[test]
fn a_missing_output_or_an_empty_glob_is_an_error() {
    let store = tempfile::tempdir().unwrap();
    let p = project(store.path().to_str().unwrap());
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace("outputs = [\"out/\"]", "outputs = [\"out/\", \"dist/app\"]"),
    );
    let run = p.pipe(&["build"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("step `compile` did not write its declared output `dist/app`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: make the command write it"),
        "{}",
        run.stderr
    );

    // A glob that matches nothing is caught when pipeline.toml is read
    // (as `pipe validate` does), with its position: exit 2.
    p.write("pipeline.toml", &toml.replace("src/*.txt", "src/*.c"));
    let run = p.pipe(&["build"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("input `src/*.c` of step `compile` matches no file"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("pipeline.toml:"), "{}", run.stderr);
}

#[test]
fn steps_run_with_a_clean_environment() {
    let store = tempfile::tempdir().unwrap();
    let mut p = project(store.path().to_str().unwrap());
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace(
            "run = \"mkdir -p out && ",
            "env = { GREETING = \"hi\" }\nrun = \"mkdir -p out && env | sort > out/env && ",
        ),
    );
    p.env("LEAKY_SECRET", "should-not-be-seen");
    p.pipe(&["build"]).expect_code(0);
    let env = std::fs::read_to_string(p.path().join("out/env")).unwrap();
    assert!(env.contains("GREETING=hi"), "{env}");
    assert!(env.contains("SOURCE_DATE_EPOCH=1700000000"), "{env}");
    assert!(!env.contains("LEAKY_SECRET"), "{env}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    out
}
