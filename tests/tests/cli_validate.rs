//! `pipe validate` and `pipe init`: every validation rule shows its
//! file:line:column, the offending line with a caret, a hint, and exit code 2;
//! several problems are reported in one run.

use pipe_e2e::cli::Project;

/// A small valid project; tests break one thing at a time.
const VALID: &str = r#"[project]
name = "demo"
version = "1.0.0"

[environments.dev]
[environments.prod]
from = "dev"

[packages.demo]
summary = "Demo"
maintainer = "Demo <demo@example.com>"
arch = "amd64"
files = [
  { src = "bin/demo", dst = "/usr/bin/demo", mode = "0755" },
  { src = "share/", dst = "/usr/share/demo/" },
]

[images.demo]
packages = ["demo"]

[machines.box]
base = "rootfs:rootfs.tar"
packages = ["demo"]
size = "64M"
"#;

fn project(pipeline_toml: &str) -> Project {
    let p = Project::new();
    p.write("bin/demo", "#!/bin/sh\necho demo\n")
        .write("share/a.txt", "a\n")
        .write("rootfs.tar", "")
        .write("pipeline.toml", pipeline_toml);
    p
}

/// Runs `pipe validate` where the user would (paths in messages are relative)
/// and expects exit code 2.
fn invalid(pipeline_toml: &str) -> String {
    let p = project(pipeline_toml);
    let run = p.pipe_here(&["validate"]);
    run.expect_code(2);
    assert!(run.stdout.is_empty(), "errors go to stderr: {}", run.stdout);
    run.stderr
}

#[test]
fn valid_project_summarises_the_build() {
    let p = project(VALID);
    let run = p.pipe(&["validate"]);
    run.expect_code(0);
    for expected in [
        "project demo 1.0.0",
        "demo_1.0.0_amd64.deb",
        "demo-1.0.0-1.x86_64.rpm",
        "oci-image demo.oci.tar",
        "box.raw",
        "box.qcow2",
        "box.bake.json",
        "environments: dev, prod (from dev)",
        "package demo: 2 input file(s)",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            run.stdout
        );
    }
    // Nothing is promised that a build will not make.
    for absent in ["warning:", "not built yet"] {
        assert!(
            !run.stdout.contains(absent),
            "{absent} listed in:\n{}",
            run.stdout
        );
    }
    let json = p.pipe(&["--json", "validate"]).expect_code(0).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["project"]["version"], "1.0.0");
    assert_eq!(json["artifacts"].as_array().unwrap().len(), 6);
    assert_eq!(json["plan"]["not_built"].as_array().unwrap().len(), 1);
}

#[test]
fn the_example_project_is_valid() {
    let p = Project::example("hello");
    let run = p.pipe(&["validate"]);
    run.expect_code(0);
    assert!(run.stdout.contains("hello_1.2.0_all.deb"), "{}", run.stdout);
    assert!(
        run.stdout.contains("hello-1.2.0-1.noarch.rpm"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("warning: [machines.web]"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("web.qcow2"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("dev, staging (from dev), prod (from staging)"),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_key_points_at_it_with_a_suggestion() {
    let err = invalid(&VALID.replace("summary = \"Demo\"", "sumary = \"Demo\""));
    assert_eq!(
        err,
        "error: missing `summary` in `[packages.demo]`
 --> pipeline.toml:9:1
  |
9 | [packages.demo]
  | ^^^^^^^^^^^^^^^
  = hint: add `summary = \"one line about the package\"`

error: unknown key `sumary` in `[packages.demo]`
  --> pipeline.toml:10:1
   |
10 | sumary = \"Demo\"
   | ^^^^^^
   = hint: did you mean `summary`?

2 errors in pipeline.toml
"
    );
}

#[test]
fn unknown_section_is_caught_too() {
    let err = invalid(&format!("{VALID}\n[pakages.other]\nsummary = \"x\"\n"));
    assert!(
        err.contains("unknown key `pakages` in the top level"),
        "{err}"
    );
    assert!(err.contains("did you mean `packages`?"), "{err}");
    assert!(err.contains("pipeline.toml:26:2"), "{err}");
}

#[test]
fn several_errors_are_reported_in_one_run() {
    let broken = VALID
        .replace("version = \"1.0.0\"", "version = \"1.0.0rc1\"")
        .replace("dst = \"/usr/bin/demo\"", "dst = \"usr/bin/demo\"")
        .replace("mode = \"0755\"", "mode = \"0855\"")
        .replace(
            "packages = [\"demo\"]\n\n[machines",
            "packages = [\"dmeo\"]\n\n[machines",
        );
    let err = invalid(&broken);
    assert!(err.contains("4 errors in pipeline.toml"), "{err}");
    let positions: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("--> pipeline.toml:"))
        .collect();
    assert_eq!(positions.len(), 4, "{err}");
    // In file order.
    assert!(positions[0].ends_with(":3:11"), "{positions:?}");
}

#[test]
fn package_names_dpkg_or_rpm_would_reject() {
    let err = invalid(
        &VALID
            .replace("[packages.demo]", "[packages.Demo]")
            .replace("[\"demo\"]", "[\"Demo\"]"),
    );
    assert!(
        err.contains("`Demo` is not a valid Debian package name"),
        "{err}"
    );
    assert!(err.contains("lowercase letters"), "{err}");
    assert!(err.contains("pipeline.toml:9:11"), "{err}");

    // An rpm-only package may use uppercase, but not a space or `/`.
    let rpm_only = VALID
        .replace("[packages.demo]", "[packages.\"my/demo\"]")
        .replace(
            "summary = \"Demo\"",
            "summary = \"Demo\"\nformats = [\"rpm\"]",
        )
        .replace("[\"demo\"]", "[\"my/demo\"]");
    let err = invalid(&rpm_only);
    assert!(
        err.contains("`my/demo` is not a valid RPM package name"),
        "{err}"
    );
}

#[test]
fn versions_dpkg_or_rpm_would_misorder_or_reject() {
    let err = invalid(&VALID.replace("\"1.0.0\"", "\"1.0.0rc1\""));
    assert!(
        err.contains("version `1.0.0rc1` sorts after `1.0.0` in dpkg and rpm"),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: write the pre-release with `~`, which sorts before everything: `1.0.0~rc1`"
        ),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:3:11"), "{err}");

    let err = invalid(&VALID.replace("\"1.0.0\"", "\"1.0.0-2\""));
    assert!(err.contains("version `1.0.0-2` contains `-`"), "{err}");

    let err = invalid(&VALID.replace("\"1.0.0\"", "\"v1.0.0\""));
    assert!(err.contains("does not start with a digit"), "{err}");

    let err = invalid(&VALID.replace("\"1.0.0\"", "1.0"));
    assert!(
        err.contains("`project.version` must be a string, found a float"),
        "{err}"
    );
}

#[test]
fn destinations_must_be_absolute_without_dotdot() {
    let err = invalid(&VALID.replace("\"/usr/bin/demo\"", "\"usr/bin/demo\""));
    assert!(
        err.contains("`usr/bin/demo` is not an absolute path"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:14:29"), "{err}");
    let err = invalid(&VALID.replace("\"/usr/bin/demo\"", "\"/usr/../etc/demo\""));
    assert!(
        err.contains("`/usr/../etc/demo` contains a `.` or `..` component"),
        "{err}"
    );
}

#[test]
fn modes_must_be_octal_strings() {
    let err = invalid(&VALID.replace("\"0755\"", "\"0855\""));
    assert!(
        err.contains("mode `0855` is not an octal permission"),
        "{err}"
    );
    let err = invalid(&VALID.replace("\"0755\"", "755"));
    assert!(
        err.contains("mode `755` is a number, not an octal string"),
        "{err}"
    );
    assert!(err.contains("write `mode = \"0755\"`"), "{err}");
}

#[test]
fn missing_source_files() {
    let err = invalid(&VALID.replace("\"bin/demo\"", "\"bin/missing\""));
    assert!(err.contains("`src` `bin/missing` does not exist"), "{err}");
    assert!(
        err.contains("paths are relative to the directory holding pipeline.toml"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:14:11"), "{err}");
}

#[test]
fn images_and_machines_must_name_declared_packages() {
    let err = invalid(
        &VALID
            .replace(
                "[images.demo]\npackages = [\"demo\"]",
                "[images.demo]\npackages = [\"dmeo\"]",
            )
            .replace(
                "packages = [\"demo\"]\nsize",
                "packages = [\"other\"]\nsize",
            ),
    );
    assert!(
        err.contains("image `demo` names package `dmeo`, which is not declared"),
        "{err}"
    );
    assert!(err.contains("did you mean `demo`?"), "{err}");
    assert!(
        err.contains("machine `box` names package `other`, which is not declared"),
        "{err}"
    );
    assert!(err.contains("declared packages: `demo`"), "{err}");
}

#[test]
fn image_keys_are_checked() {
    // Every key of `[images.NAME]` accepted (what they do: tests/tests/image.rs).
    let p = project(&VALID.replace(
        "[images.demo]\npackages = [\"demo\"]",
        "[images.demo]\npackages = [\"demo\"]\nbase = \"docker-archive:rootfs.tar\"\ncmd = [\"--serve\"]\nworkdir = \"/srv\"\nuser = \"1000\"\nlabels = { team = \"ops\" }\ncompression = \"zstd\"",
    ));
    let run = p.pipe(&["--json", "validate"]);
    run.expect_code(0);
    let out = run.stdout.clone();
    assert!(out.contains("demo.oci.tar"), "{out}");
    let err = invalid(&VALID.replace(
        "[images.demo]\npackages = [\"demo\"]",
        "[images.demo]\npackages = [\"demo\"]\nbase = \"tarball:x.tar\"\nworkdir = \"srv\"\ncompression = \"xz\"",
    ));
    for want in [
        "unknown image base `tarball:x.tar`",
        "docker-archive:path/to/saved.tar",
        "`workdir` `srv` is not an absolute path",
        "unknown layer compression `xz`",
        "pipeline.toml:2",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}

#[test]
fn environments_from_unknown_or_cyclic() {
    let err = invalid(&VALID.replace("from = \"dev\"", "from = \"dve\""));
    assert!(
        err.contains("environment `prod` is promoted from `dve`, which is not declared"),
        "{err}"
    );
    assert!(err.contains("did you mean `dev`?"), "{err}");
    assert!(err.contains("pipeline.toml:7:8"), "{err}");

    let cyclic = VALID.replace(
        "[environments.dev]\n",
        "[environments.dev]\nfrom = \"qa\"\n[environments.qa]\nfrom = \"prod\"\n",
    );
    let err = invalid(&cyclic);
    assert!(
        err.contains("environments form a promotion cycle: dev ← qa ← prod ← dev"),
        "{err}"
    );
    assert_eq!(
        err.matches("promotion cycle").count(),
        1,
        "reported once: {err}"
    );
}

#[test]
fn toml_syntax_errors_have_positions() {
    let err = invalid(&VALID.replace("name = \"demo\"", "name = \"demo"));
    assert!(err.contains("invalid TOML"), "{err}");
    assert!(err.contains("--> pipeline.toml:2:"), "{err}");
}

#[test]
fn json_errors_are_one_document() {
    let p = project(&VALID.replace("arch = \"amd64\"", "arch = \"x86_64\""));
    let run = p.pipe(&["--json", "validate"]);
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    let d = &doc["error"]["diagnostics"][0];
    assert_eq!(d["message"], "unknown architecture `x86_64`");
    assert_eq!(d["line"], 12);
    assert_eq!(d["column"], 8);
    assert_eq!(
        d["hint"],
        "pipe uses Debian's names: write `amd64`; the rpm gets `x86_64`"
    );
}

#[test]
fn missing_pipeline_toml_is_a_usage_error() {
    let p = Project::new();
    let run = p.pipe(&["validate"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("no `pipeline.toml` in"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: run `pipe init`"),
        "{}",
        run.stderr
    );
}

#[test]
fn init_writes_a_valid_starter_and_never_overwrites() {
    let p = Project::new();
    p.write(".gitignore", "target/");
    p.pipe(&["init"]).expect_code(0);
    let written = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    assert!(written.contains("[environments.prod]"), "{written}");
    assert_eq!(
        std::fs::read_to_string(p.path().join(".gitignore")).unwrap(),
        "target/\n# pipe's local store and caches\n.pipe/\n"
    );
    p.pipe(&["validate"]).expect_code(0);

    p.write("pipeline.toml", "# mine\n");
    let again = p.pipe(&["init"]);
    again.expect_code(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap(),
        "# mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join(".gitignore"))
            .unwrap()
            .matches(".pipe/")
            .count(),
        1
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let p = project(VALID);
    p.pipe(&["validate", "--no-such-flag"]).expect_code(2);
    let run = p.pipe(&["--store", "gs://bucket/x", "validate"]);
    run.expect_code(2);
    assert!(run.stderr.contains("gs://bucket/x"), "{}", run.stderr);
}

#[test]
fn package_files_may_come_from_build_steps() {
    let with_step = VALID.replace(
        "[packages.demo]",
        "[steps.compile]\nrun = \"mkdir -p out && cp bin/demo out/demo\"\ninputs = [\"bin/*\"]\noutputs = [\"out/\"]\n\n[packages.demo]",
    );
    // `out/demo` does not exist yet: a step will produce it.
    let p = project(&with_step.replace("\"bin/demo\", dst", "\"out/demo\", dst"));
    let doc = p.pipe(&["--json", "validate"]).expect_code(0).json();
    assert_eq!(doc["ok"], true);

    // A file no step declares must exist.
    let err = invalid(&with_step.replace("\"bin/demo\", dst", "\"build/demo\", dst"));
    assert!(err.contains("`src` `build/demo` does not exist"), "{err}");

    let err = invalid(&with_step.replace("outputs = [\"out/\"]", "outputs = [\"/tmp/out\"]"));
    assert!(err.contains("`/tmp/out` is an absolute path"), "{err}");
    let err = invalid(&with_step.replace("outputs = [\"out/\"]\n", ""));
    assert!(
        err.contains("`[steps.compile]` declares no `outputs`"),
        "{err}"
    );
    let err = invalid(&with_step.replace("run = ", "command = "));
    assert!(
        err.contains("unknown key `command` in `[steps.compile]`"),
        "{err}"
    );
    assert!(err.contains("missing `run` in `[steps.compile]`"), "{err}");
}

#[test]
fn relations_priority_and_compression_are_checked() {
    let err = invalid(&VALID.replace(
        "arch = \"amd64\"",
        "arch = \"amd64\"\ndepends = [\"libc6 (> 2.36)\"]\npriority = \"optinal\"\ncompression = \"bzip2\"",
    ));
    assert!(
        err.contains("`libc6 (> 2.36)` is not a valid package relation"),
        "{err}"
    );
    assert!(err.contains("unknown priority `optinal`"), "{err}");
    assert!(err.contains("did you mean `optional`?"), "{err}");
    assert!(err.contains("unknown compression `bzip2`"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn repository_durations_are_checked_where_they_are_written() {
    let err = invalid(&format!(
        "{VALID}\n[repository]\nvalid_for = \"a week\"\ngrace = \"0s\"\nlabel = \"two\\nlines\"\n"
    ));
    for expected in [
        "error: `repository.valid_for`: `a week` is not a duration",
        "= hint: write a count and a unit (s, m, h, d, w, y), e.g. `7d` or `12h`",
        "error: `repository.grace`: `0s` is zero",
        "error: `repository.label` spans lines",
    ] {
        assert!(err.contains(expected), "{expected} in:\n{err}");
    }
    let lines = VALID.lines().count();
    assert!(
        err.contains(&format!("pipeline.toml:{}:13", lines + 3)),
        "the position of the bad value:\n{err}"
    );
}

#[test]
fn deploy_section_packages_after_and_templates() {
    let ok = format!(
        "{VALID}\n[deploy]\npackages = [\"demo\"]\nafter = \"true\"\nfiles = {{ \"/etc/demo.conf\" = \"env={{{{ env }}}}\\n\" }}\n"
    );
    project(&ok).pipe(&["validate"]).expect_code(0);

    // VALID has 24 lines, then a blank line, `[deploy]` and `packages` (27).
    let err = invalid(&format!(
        "{VALID}\n[deploy]\npackages = [\"dmeo\", \"demo\", \"demo\"]\nafter = \"\"\nfiles = {{ \"/etc/x\" = \"{{{{ nope\" }}\n"
    ));
    assert!(
        err.contains("`[deploy]` names package `dmeo`, which is not declared"),
        "{err}"
    );
    assert!(err.contains("did you mean `demo`?"), "{err}");
    assert!(err.contains("pipeline.toml:27:13"), "{err}");
    assert!(
        err.contains("package `demo` is listed twice in `deploy.packages`"),
        "{err}"
    );
    assert!(err.contains("`deploy.after` is empty"), "{err}");
    assert!(
        err.contains("template for `/etc/x`: `{{` is never closed"),
        "{err}"
    );
    assert!(err.contains("4 errors in pipeline.toml"), "{err}");

    let err = invalid(&format!("{VALID}\n[deploy]\npackages = []\nafter = 1\n"));
    assert!(
        err.contains("`deploy.packages` is empty, so a deploy would install nothing"),
        "{err}"
    );
    assert!(
        err.contains("`deploy.after` must be a string, found an integer"),
        "{err}"
    );

    let err = invalid(&format!("{VALID}\n[deploy]\nafterwards = \"x\"\n"));
    assert!(
        err.contains("unknown key `afterwards` in `[deploy]`"),
        "{err}"
    );
    assert!(err.contains("did you mean `after`?"), "{err}");
}

#[test]
fn documentation_settings_are_checked_where_they_are_written() {
    let with = |settings: &str| {
        VALID.replace(
            "arch = \"amd64\"\n",
            &format!("arch = \"amd64\"\n{settings}\n"),
        )
    };
    // A changelog whose newest entry is for another version.
    let p = project(&with("changelog = \"CHANGES.md\""));
    p.write("CHANGES.md", "## 0.9.0 - 2023-01-01\n- Old.\n");
    let run = p.pipe_here(&["validate"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "changelog `CHANGES.md`: the newest entry is for version `0.9.0`, expected `1.0.0`"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("pipeline.toml:13:13"), "{}", run.stderr);
    // A line the simple list format does not know, named by its line.
    let p = project(&with("changelog = \"CHANGES.md\""));
    p.write(
        "CHANGES.md",
        "## 1.0.0 - 2023-01-01\n- Fine.\nloose prose\n",
    );
    let run = p.pipe_here(&["validate"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("changelog `CHANGES.md` line 3: expected a change item `- text`"),
        "{}",
        run.stderr
    );
    // A Debian changelog with a bad date.
    let p = project(&with("changelog = \"debian/changelog\""));
    p.write(
        "debian/changelog",
        "demo (1.0.0) unstable; urgency=low\n\n  * First.\n\n -- Demo <demo@example.com>  yesterday\n",
    );
    let run = p.pipe_here(&["validate"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("changelog `debian/changelog` line 5: `yesterday` is not a date"),
        "{}",
        run.stderr
    );
    // A missing license file, a copyright and group over two lines.
    let err = invalid(&with(
        "license_file = \"LICENSE\"\ncopyright = \"2023 A\\n2024 B\"\ngroup = \"\"",
    ));
    assert!(
        err.contains("`license_file` `LICENSE` does not exist"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:13:16"), "{err}");
    assert!(
        err.contains("`packages.demo.copyright` spans several lines"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:14:13"), "{err}");
    assert!(err.contains("`packages.demo.group` is empty"), "{err}");
    assert!(err.contains("pipeline.toml:15:9"), "{err}");
    // And a valid set is accepted.
    let p = project(&with(
        "license_file = \"LICENSE\"\ncopyright = \"2023 Demo Ltd\"\ngroup = \"Applications/System\"\nchangelog = \"CHANGES.md\"",
    ));
    p.write("LICENSE", "Do what you like.\n")
        .write("CHANGES.md", "## 1.0.0 - 2023-01-01\n- First.\n");
    p.pipe(&["validate"]).expect_code(0);
}
