//! The build plan as a value: `pipe build --plan` prints it (human and
//! `--json`) without running anything, `pipe validate` summarises it, and
//! `pipe build` executes exactly it. Snapshots (insta) of the plan of the
//! example project and of a larger one: a change in what a build does shows
//! up as a readable diff.

use pipe_e2e::cli::Project;

/// Four packages in several formats and architectures, a chain of three
/// steps, scripts, an image and a machine.
const LARGER: &str = r#"
[project]
name = "fleet"
version = "3.1.4"
source_date_epoch = 1700000000

[environments.dev]
[environments.prod]
from = "dev"

[steps.gen]
run = "mkdir -p gen && cp src/a.in gen/a.txt"
inputs = ["src/*.in"]
outputs = ["gen/"]

[steps.compile]
run = "mkdir -p out && cat gen/a.txt > out/tool && chmod 0755 out/tool"
inputs = ["gen/**"]
outputs = ["out/"]

[steps.docs]
run = "mkdir -p docs-out && cp doc/readme.md docs-out/"
inputs = ["doc/*.md"]
outputs = ["docs-out/"]

[packages.fleet-agent]
summary = "Agent"
maintainer = "Ops <ops@example.com>"
license = "MIT"
description = "The agent."
arch = "amd64"
formats = ["deb", "rpm"]
files = [
  { src = "out/tool", dst = "/usr/bin/fleet-agent", mode = "0755" },
  { src = "etc/agent.conf", dst = "/etc/fleet/agent.conf", config = true },
]
scripts = { postinst = "scripts/postinst.sh", prerm = "scripts/prerm.sh" }

[packages.fleet-data]
summary = "Data"
maintainer = "Ops <ops@example.com>"
license = "MIT"
description = "Static data."
arch = "all"
formats = ["deb"]
files = [{ src = "data/", dst = "/usr/share/fleet/" }]

[packages.fleet-docs]
summary = "Docs"
maintainer = "Ops <ops@example.com>"
license = "MIT"
description = "Documentation."
arch = "all"
formats = ["rpm", "deb"]
files = [{ src = "docs-out/readme.md", dst = "/usr/share/doc/fleet/readme.md" }]

[packages.libfleet]
summary = "Library"
maintainer = "Ops <ops@example.com>"
license = "MIT"
description = "The library."
arch = "arm64"
formats = ["rpm"]
files = [{ src = "lib/libfleet.so", dst = "/usr/lib/libfleet.so" }]

[images.fleet]
base = "scratch"
packages = ["fleet-agent"]

[machines.node]
base = "rootfs:rootfs.tar"
packages = ["fleet-agent", "fleet-data"]
size = "64M"
"#;

fn larger() -> Project {
    let p = Project::new();
    p.write("pipeline.toml", LARGER)
        .write("src/a.in", "a\n")
        .write("doc/readme.md", "# fleet\n")
        .write("etc/agent.conf", "level=info\n")
        .write("data/one.txt", "1\n")
        .write("data/sub/two.txt", "2\n")
        .write("lib/libfleet.so", "\x7fELF not really\n")
        .write("scripts/postinst.sh", "#!/bin/sh\nexit 0\n")
        .write("scripts/prerm.sh", "#!/bin/sh\nexit 0\n")
        .write("rootfs.tar", "");
    p
}

/// Nothing a plan may leave behind: no build, no store, no step output.
fn assert_nothing_ran(p: &Project, step_outputs: &[&str]) {
    for path in [".pipe/builds", ".pipe/store"].iter().chain(step_outputs) {
        assert!(
            !p.path().join(path).exists(),
            "`pipe build --plan` wrote {path}"
        );
    }
}

#[test]
fn the_example_plan() {
    let p = Project::example("hello");
    let human = p.pipe(&["build", "--plan"]).expect_code(0).stdout.clone();
    insta::assert_snapshot!("example_plan", human);
    let json = p.pipe(&["--json", "build", "--plan"]).expect_code(0).json();
    insta::assert_snapshot!(
        "example_plan_json",
        serde_json::to_string_pretty(&json["plan"]).unwrap()
    );
    assert_nothing_ran(&p, &["build"]);
}

#[test]
fn a_larger_plan() {
    let p = larger();
    let human = p.pipe(&["build", "--plan"]).expect_code(0).stdout.clone();
    insta::assert_snapshot!("larger_plan", human);
    let json = p.pipe(&["--json", "build", "--plan"]).expect_code(0).json();
    insta::assert_snapshot!(
        "larger_plan_json",
        serde_json::to_string_pretty(&json["plan"]).unwrap()
    );
    assert_nothing_ran(&p, &["gen", "out", "docs-out"]);

    // Steps run in dependency order; a node reading a step's outputs says
    // so and has no key before the step ran.
    let plan = &json["plan"];
    let order: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let pos = |n: &str| order.iter().position(|s| *s == n).unwrap();
    assert!(pos("gen") < pos("compile"), "{order:?}");
    assert_eq!(plan["steps"][pos("compile")]["after"][0], "gen");
    assert!(plan["steps"][pos("compile")]["cache_key"].is_null());
    assert_eq!(
        plan["steps"][pos("gen")]["cache_key"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let node = |id: &str| {
        plan["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no node {id} in {plan}"))
            .clone()
    };
    assert_eq!(node("deb fleet-agent")["after_steps"][0], "compile");
    assert_eq!(
        node("deb fleet-data")["cache_key"].as_str().unwrap().len(),
        64
    );
    // Without the signing key an rpm's key cannot be known (it covers the
    // key's fingerprint).
    assert!(node("rpm libfleet")["cache_key"].is_null());
    assert_eq!(
        node("rpm libfleet")["outputs"][0],
        "libfleet-3.1.4-1.aarch64.rpm"
    );
    // Nothing is promised for what is not built.
    let sections: Vec<&str> = plan["not_built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["section"].as_str().unwrap())
        .collect();
    assert!(sections.is_empty(), "{sections:?}");
}

/// `pipe build` makes exactly the plan's artifacts, each with the key the
/// plan announced.
#[test]
fn build_executes_exactly_the_plan() {
    let p = larger();
    // Its machine's base is a placeholder; machine builds are tested with a
    // real base in `machine_pipeline`.
    p.write(
        "pipeline.toml",
        LARGER.split("[machines.node]").next().unwrap(),
    );
    p.with_signing_key();
    let plan = p.pipe(&["--json", "build", "--plan"]).expect_code(0).json();
    let plan = &plan["plan"];
    // With the key, every node that reads no step output is keyed, rpm too.
    let keyed: Vec<(String, String)> = plan["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["after_steps"].as_array().unwrap().is_empty())
        .map(|a| {
            (
                a["outputs"][0].as_str().unwrap().to_string(),
                a["cache_key"]
                    .as_str()
                    .expect("keyed with the key")
                    .to_string(),
            )
        })
        .collect();
    assert!(keyed.iter().any(|(n, _)| n.ends_with(".rpm")), "{keyed:?}");
    let mut planned: Vec<String> = plan["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["outputs"].as_array().unwrap().clone())
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    planned.sort();

    let run = p.pipe(&["--json", "build"]);
    run.expect_code(0);
    // Every declared section is built: nothing is announced as missing.
    assert!(!run.stderr.contains("not built yet"), "{}", run.stderr);
    let built = run.json();
    let mut names: Vec<String> = built["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    // An image node whose layers are known only after its inputs (here: it
    // reads a step's output) is planned as its tarball and recorded as its
    // manifest, config and layers.
    let is_image_part = |n: &String| n.starts_with("fleet.oci.");
    let planned_images: Vec<&String> = planned.iter().filter(|n| is_image_part(n)).collect();
    if planned_images == [&"fleet.oci.tar".to_string()] {
        planned.retain(|n| !is_image_part(n));
        names.retain(|n| !is_image_part(n));
    }
    assert_eq!(names, planned);
    let build_dir = p
        .path()
        .join(".pipe/builds")
        .join(built["build"].as_str().unwrap());
    assert!(build_dir.join("fleet.oci.tar").exists());
    for (name, key) in &keyed {
        let a = built["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name.as_str())
            .unwrap();
        assert_eq!(a["cache_key"], key.as_str(), "{name}");
    }
    let steps: Vec<&str> = built["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let plan_steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, plan_steps);
}

/// `pipe validate` summarises the plan: the artifacts that will appear, the
/// steps, and a warning for each section that builds nothing yet.
#[test]
fn validate_summarises_the_plan() {
    let p = larger();
    let run = p.pipe(&["validate"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("a build runs 3 step(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("a build would produce 10 artifact(s)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("warning:"), "{}", run.stdout);
    assert!(run.stdout.contains("fleet.oci.tar"), "{}", run.stdout);
    let json = p.pipe(&["--json", "validate"]).expect_code(0).json();
    assert_eq!(json["artifacts"].as_array().unwrap().len(), 10);
    assert_eq!(json["plan"]["steps"].as_array().unwrap().len(), 3);
}
