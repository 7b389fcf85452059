//! `pipe publish`, `pipe promote`, `pipe rollback`, `pipe history`: blobs go
//! up once, a version is never reused, promotions follow the declared path,
//! every move is a signed link in a chain, concurrent promotions have exactly
//! one winner, and a promotion killed at any step is finished by the next.

use pipe_e2e::cli::Project;
use pipe_e2e::fixture::Demo;

/// The demo project: dev, then staging, then prod; package `demo` as a
/// .deb.
fn project() -> Project {
    Demo::new()
        .env("staging", Some("dev"))
        .env("prod", Some("staging"))
        .formats(&["deb"])
        .create()
}

/// Builds and publishes version `version` with `content`; returns the build id.
fn release(p: &Project, version: &str, content: &str) -> String {
    p.write("demo.txt", content);
    p.release(version)
}

fn head(p: &Project, env: &str) -> serde_json::Value {
    let doc = p.pipe(&["--json", "status"]).expect_code(0).json();
    doc["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == env)
        .unwrap()["build"]
        .clone()
}

#[test]
fn publishing_twice_uploads_nothing() {
    let p = project();
    let build = p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
        .as_str()
        .unwrap()
        .to_string();
    // A fresh store: the first publish sends every blob.
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let first = p
        .pipe(&["--json", "--store", s, "publish"])
        .expect_code(0)
        .json();
    assert!(
        first["report"]["bytes_uploaded"].as_u64().unwrap() > 0,
        "{first}"
    );
    assert_eq!(first["report"]["newly_published"], true);
    let second = p
        .pipe(&["--json", "--store", s, "publish"])
        .expect_code(0)
        .json();
    assert_eq!(second["report"]["bytes_uploaded"], 0, "{second}");
    assert_eq!(second["report"]["newly_published"], false);
    assert!(
        store
            .path()
            .join(format!("builds/{build}/manifest.json"))
            .exists()
    );
    assert!(
        store
            .path()
            .join(format!("builds/{build}/provenance.json.asc"))
            .exists()
    );
}

#[test]
fn a_version_cannot_be_reused_for_other_bytes() {
    let p = project();
    let first = release(&p, "1.0.0", "one\n");
    p.write("demo.txt", "changed without a new version\n");
    let second = p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    let run = p.pipe(&["publish", &second]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`demo_1.0.0_all.deb` is already published with different content"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("from build {first}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("raise `version`"), "{}", run.stderr);
    assert!(
        !p.path()
            .join(format!(".pipe/store/builds/{second}"))
            .exists(),
        "nothing of the refused build is published"
    );
}

#[test]
fn promotion_follows_the_declared_path_unless_forced() {
    let p = project();
    let b1 = release(&p, "1.0.0", "one\n");
    let run = p.pipe(&["promote", &b1, "--to", "staging"]);
    run.expect_code(2);
    assert!(run.stderr.contains("was never in `dev`"), "{}", run.stderr);
    assert!(
        head(&p, "staging").is_null(),
        "a refused promotion changes nothing"
    );

    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &b1, "--to", "staging"]).expect_code(0);
    assert!(head(&p, "staging").as_str().unwrap().starts_with(&b1));

    let b2 = release(&p, "1.0.1", "two\n");
    let forced = p
        .pipe(&["--json", "promote", &b2, "--to", "prod", "--force"])
        .expect_code(0)
        .json();
    assert_eq!(forced["entry"]["forced"], true);
    let history = p
        .pipe(&["--json", "history", "prod", "--keyring", &p.keyring()])
        .expect_code(0)
        .json();
    assert_eq!(history["entries"][0]["entry"]["forced"], true);

    // An unpublished build cannot be promoted.
    let run = p.pipe(&["promote", "9.9.9-0000000000000000", "--to", "dev"]);
    run.expect_code(2);
    assert!(run.stderr.contains("is not published"), "{}", run.stderr);
}

#[test]
fn history_is_a_signed_chain_and_rollback_appends_to_it() {
    let mut p = project();
    p.env("PIPE_ACTOR", "release-bot");
    let b1 = release(&p, "1.0.0", "one\n");
    let b2 = release(&p, "1.0.1", "two\n");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    let rolled = p
        .pipe(&["--json", "rollback", "--env", "dev"])
        .expect_code(0)
        .json();
    assert_eq!(rolled["entry"]["build"], b1.as_str());
    assert_eq!(rolled["entry"]["action"], "rollback");
    assert_eq!(rolled["entry"]["seq"], 3);
    p.pipe(&["rollback", "--env", "dev", "--to", "2"])
        .expect_code(0);
    assert!(head(&p, "dev").as_str().unwrap().starts_with(&b2));

    let ring = p.keyring();
    let run = p.pipe(&["history", "dev", "--keyring", &ring]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("chain intact; every entry signed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("by release-bot"), "{}", run.stdout);
    let doc = p.pipe(&["--json", "history", "dev"]).expect_code(0).json();
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(entries[0]["entry"]["previous"].is_null());
    assert_eq!(entries[1]["entry"]["previous"].as_str().unwrap().len(), 64);

    // Editing an old entry breaks the chain (its digest no longer matches).
    let path = p.path().join(".pipe/store/envs/dev/history/00000002.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("release-bot", "someone-else")).unwrap();
    let run = p.pipe(&["history", "dev", "--keyring", &ring]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("history of `dev`, entry"),
        "{}",
        run.stderr
    );
}

/// Starts `n` `pipe promote` processes (with `env` added) that all read the
/// pointer, then wait at a barrier, then race to replace it.
fn race(p: &Project, n: usize, args: &[&str], env: &[(String, String)]) -> Vec<i32> {
    p.race(n, args, env).iter().map(|r| r.code).collect()
}

/// Eight processes promote `build` to dev at once: exactly one wins, seven
/// exit 4, and the history (signatures checked) has one entry more.
fn eight_race_for_dev(p: &Project, build: &str, env: &[(String, String)]) {
    let codes = race(p, 8, &["promote", build, "--to", "dev"], env);
    assert_eq!(
        codes.iter().filter(|c| **c == 0).count(),
        1,
        "exit codes {codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == 4).count(),
        7,
        "exit codes {codes:?}"
    );
    let doc = p
        .pipe(&["--json", "history", "dev", "--keyring", &p.keyring()])
        .expect_code(0)
        .json();
    assert_eq!(
        doc["entries"].as_array().unwrap().len(),
        2,
        "one entry per successful promotion"
    );
}

#[test]
fn of_eight_concurrent_promotions_exactly_one_wins() {
    let p = project();
    let b1 = release(&p, "1.0.0", "one\n");
    let b2 = release(&p, "1.0.1", "two\n");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    eight_race_for_dev(&p, &b2, &[]);
    // The winner regenerated the suite; no loser wrote an older one over it.
    let packages = std::fs::read_to_string(
        p.path()
            .join(".pipe/store/dists/dev/main/binary-amd64/Packages"),
    )
    .unwrap();
    assert!(packages.contains("Version: 1.0.1"), "{packages}");
}

#[test]
fn a_conflict_names_the_environment_and_exits_4() {
    let p = project();
    let b1 = release(&p, "1.0.0", "one\n");
    let codes = race(&p, 2, &["promote", &b1, "--to", "dev"], &[]);
    assert_eq!(
        {
            let mut c = codes.clone();
            c.sort();
            c
        },
        vec![0, 4],
        "{codes:?}"
    );
}

#[test]
fn a_promotion_killed_at_any_step_is_finished_by_the_next() {
    for point in ["before-pointer", "after-pointer"] {
        let mut p = project();
        let b1 = release(&p, "1.0.0", "one\n");
        let b2 = release(&p, "1.0.1", "two\n");
        p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
        p.env("PIPE_FAULT", point);
        let killed = p.pipe(&["promote", &b2, "--to", "dev"]);
        assert_eq!(killed.code, 137, "{point}: {}", killed.stderr);
        let mut p = p;
        p.env("PIPE_FAULT", "none");
        // Readable and consistent right after the crash.
        let ring = p.keyring();
        p.pipe(&["history", "dev", "--keyring", &ring])
            .expect_code(0);
        // The next promotion completes.
        let next = p
            .pipe(&["--json", "promote", &b2, "--to", "dev"])
            .expect_code(0)
            .json();
        assert_eq!(next["entry"]["build"], b2.as_str(), "{point}");
        let doc = p
            .pipe(&["--json", "history", "dev", "--keyring", &ring])
            .expect_code(0)
            .json();
        assert_eq!(
            doc["entries"].as_array().unwrap().len(),
            2,
            "{point}: {doc}"
        );
        assert!(
            p.path()
                .join(".pipe/store/envs/dev/history/00000002.json")
                .exists(),
            "{point}: the history copy is repaired"
        );
    }
}

/// The same race against a real S3 server: the pointer is replaced with
/// `If-Match`, created with `If-None-Match: *`.
#[test]
fn on_s3_of_eight_concurrent_promotions_exactly_one_wins() {
    let server = pipe_e2e::s3::MotoServer::start();
    let mut p = project();
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    let store = format!("s3://{}/demo", server.bucket());
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace(
            "[environments.dev]",
            &format!("[store]\nurl = \"{store}\"\n\n[environments.dev]"),
        ),
    );
    let b1 = release(&p, "1.0.0", "one\n");
    let b2 = release(&p, "1.0.1", "two\n");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    eight_race_for_dev(&p, &b2, &server.env());
}
