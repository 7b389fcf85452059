//! `pipe deploy` and `pipe fetch`: the library does the work; this turns
//! flags into a request and the report into text or JSON.

use std::path::PathBuf;

use keys::Keyring;
use pipeline::deploy::{self, Fetched, Plan, Report, Request, Source, Timings};
use pipeline::store::Store;
use pipeline::{Error, Result};
use serde_json::json;

use super::human_bytes;
use crate::Context;
use crate::cli::{DeployArgs, FetchArgs, SeedKind, TargetArgs};

/// The targets (`--target`, then `--targets-file`), the environment and the
/// keyring, each required.
fn targets(cx: &Context, t: &TargetArgs) -> Result<Vec<PathBuf>> {
    // Relative to the project directory, like every path `-C` affects.
    let mut out: Vec<PathBuf> = t.targets.iter().map(|d| cx.dir.join(d)).collect();
    if let Some(file) = &t.targets_file {
        let path = cx.dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|d| cx.dir.join(d)),
        );
    }
    if out.is_empty() {
        return Err(Error::Usage {
            message: "no target directory".into(),
            hint: Some("pass `--target DIR` (repeatable) or `--targets-file FILE`".into()),
        });
    }
    Ok(out)
}

fn trust(t: &TargetArgs) -> deploy::Trust {
    deploy::Trust {
        allow_downgrade: t.allow_downgrade,
        allow_expired: t.allow_expired,
    }
}

fn required<'a, T>(v: &'a Option<T>, flag: &str) -> Result<&'a T> {
    v.as_ref().ok_or_else(|| Error::Usage {
        message: format!("`{flag}` is required"),
        hint: Some("see `pipe deploy --help`".into()),
    })
}

/// The store, or why it cannot be reached (deploy then falls back to the
/// cache). Any other failure to open it (no credentials, a store of a newer
/// format) is the command's error, with the exit code it has everywhere.
async fn store(cx: &Context) -> Result<std::result::Result<Store, Error>> {
    let url = cx.store_url(cx.pipeline_if_any()?)?;
    match cx.open_store(&url).await {
        Ok(store) => Ok(Ok(store)),
        Err(e) if deploy::unreachable(&e) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// Deploy and fetch need no `pipeline.toml`: what to install and write comes
/// from the signed build. When there is one, the environment must be
/// declared in it.
fn check_env(cx: &Context, env: &str) -> Result<()> {
    if let Some(p) = cx.pipeline_if_any()? {
        p.environment(env)?;
    }
    Ok(())
}

pub async fn deploy(cx: &Context, args: &DeployArgs) -> Result<()> {
    if let Some(machine) = &args.machine {
        return deploy_machine(cx, args, machine).await;
    }
    let dirs = targets(cx, &args.target)?;
    if args.check {
        return check(cx, &dirs);
    }
    let env = required(&args.target.env, "--env")?;
    check_env(cx, env)?;
    let keyring = Keyring::load(&cx.dir.join(required(&args.target.keyring, "--keyring")?))?;
    let req = Request {
        env,
        targets: &dirs,
        keyring: &keyring,
        sets: &args.sets,
        reset: args.reset,
        keep: args.keep as usize,
        trust: trust(&args.target),
    };
    let store = store(cx).await?;
    if args.plan {
        let plan = deploy::plan(store, &req).await?;
        print_plan(cx, &plan);
        return Ok(());
    }
    let spinner = cx.printer.spinner("deploying");
    let report = deploy::deploy(store, &req).await;
    spinner.finish_and_clear();
    let report = report?;
    cx.printer.result(
        || human(&report),
        || json!({ "ok": true, "report": report }),
    );
    Ok(())
}

/// `pipe deploy --machine NAME --out DIR`.
async fn deploy_machine(cx: &Context, args: &DeployArgs, machine: &str) -> Result<()> {
    let env = required(&args.target.env, "--env")?;
    check_env(cx, env)?;
    // Like a directory deploy, no `pipeline.toml` is needed; when there is
    // one, the machine must be declared in it.
    if let Some(p) = cx.pipeline_if_any()?
        && !p.machines.contains_key(machine)
    {
        return Err(Error::Usage {
            message: format!("machine `{machine}` is not declared in pipeline.toml"),
            hint: Some(format!(
                "declared machines: {}",
                if p.machines.is_empty() {
                    "none".to_string()
                } else {
                    p.machines.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )),
        });
    }
    let keyring = Keyring::load(&cx.dir.join(required(&args.target.keyring, "--keyring")?))?;
    let out = cx.dir.join(required(&args.out, "--out")?);
    let req = deploy::MachineRequest {
        env,
        machine,
        out: &out,
        keyring: &keyring,
        trust: trust(&args.target),
        sets: &args.sets,
        seed_image: match args.seed {
            SeedKind::Iso => stages::machine::seed::SeedImage::Iso,
            SeedKind::Vfat => stages::machine::seed::SeedImage::Vfat,
        },
    };
    let spinner = cx.printer.spinner("fetching the machine image");
    let report = deploy::deploy_machine(store(cx).await?, &req).await;
    spinner.finish_and_clear();
    let report = report?;
    cx.printer.result(
        || {
            let mut s = String::new();
            for i in &report.images {
                s.push_str(&format!(
                    "{} ({}, sha256 {}) verified\n",
                    i.path.display(),
                    human_bytes(i.size),
                    &i.sha256[..16]
                ));
            }
            s.push_str(&format!(
                "seed: {} and {} ({} deploy-time file(s), instance-id {})\n{} → {}: machine {} ready in {}\n",
                report.seed_dir.display(),
                report.seed_image.display(),
                report.files.len(),
                report.instance_id,
                report.env,
                report.build,
                report.machine,
                out.display()
            ));
            s
        },
        || json!({ "ok": true, "machine": report }),
    );
    Ok(())
}

pub async fn fetch(cx: &Context, args: &FetchArgs) -> Result<()> {
    let dirs = targets(cx, &args.target)?;
    let env = required(&args.target.env, "--env")?;
    check_env(cx, env)?;
    let keyring = Keyring::load(&cx.dir.join(required(&args.target.keyring, "--keyring")?))?;
    let spinner = cx.printer.spinner("fetching");
    let fetched = deploy::fetch(store(cx).await?, env, &dirs, &keyring, trust(&args.target)).await;
    spinner.finish_and_clear();
    let (report, timings) = fetched?;
    cx.printer.result(
        || {
            let mut s = artifact_lines(&report.artifacts, "already cached");
            s.push_str(&format!(
                "{} → {} ready in the cache of {} target(s){}\n{}\n",
                report.env,
                report.build,
                dirs.len(),
                source_note(&report.source),
                timing_line(&timings)
            ));
            s
        },
        || json!({ "ok": true, "report": report, "timings": timings }),
    );
    Ok(())
}

fn check(cx: &Context, dirs: &[PathBuf]) -> Result<()> {
    let reports = dirs
        .iter()
        .map(|d| deploy::check(d))
        .collect::<Result<Vec<_>>>()?;
    let differing: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.differences
                .iter()
                .map(move |d| format!("{}: {} ({})", r.dir.display(), d.path, d.what))
        })
        .collect();
    if !differing.is_empty() {
        return Err(Error::Verify {
            what: format!(
                "{} path(s) differ from the deployed artifacts",
                differing.len()
            ),
            detail: format!("\n  {}", differing.join("\n  ")),
        });
    }
    cx.printer.result(
        || {
            reports
                .iter()
                .map(|r| {
                    format!(
                        "{}: release {} matches what was deployed\n",
                        r.dir.display(),
                        r.build
                    )
                })
                .collect()
        },
        || json!({ "ok": true, "checks": reports }),
    );
    Ok(())
}

fn source_note(source: &Source) -> String {
    match source {
        Source::Store { .. } => String::new(),
        Source::Cache { dir, reason } => format!(
            "\nused the cache at {} (the store cannot be reached: {reason})",
            dir.display()
        ),
    }
}

/// `resolve 0.004s  verify 0.011s  ...  total 0.3s`.
pub fn timing_line(t: &Timings) -> String {
    format!(
        "  resolve {:.3}s  verify {:.3}s  fetch {:.3}s  unpack {:.3}s  configure {:.3}s  switch {:.3}s  total {:.3}s",
        t.resolve,
        t.verify,
        t.fetch,
        t.unpack,
        t.configure,
        t.switch,
        t.total()
    )
}

/// One line per artifact: name, size, whether it came from the cache
/// (`cached` says how) or was fetched.
fn artifact_lines(artifacts: &[Fetched], cached: &str) -> String {
    artifacts
        .iter()
        .map(|a| {
            let how = if a.cached { cached } else { "fetched" };
            format!(
                "{:<32} {:>10}  {how}, verified\n",
                a.name,
                human_bytes(a.size)
            )
        })
        .collect()
}

fn human(r: &Report) -> String {
    let mut s = artifact_lines(&r.artifacts, "from the cache");
    for t in &r.targets {
        let what = match t.action.as_str() {
            "already current" => format!("already current at {}; nothing to do", r.build),
            action => format!(
                "{action} {} (was {}); {} entries, {} file(s) rendered{}",
                r.build,
                t.previous.as_deref().unwrap_or("nothing"),
                t.entries,
                t.rendered.len(),
                if t.pruned.is_empty() {
                    String::new()
                } else {
                    format!(", pruned {}", t.pruned.join(", "))
                }
            ),
        };
        s.push_str(&format!(
            "{} {}: {what}\n{}\n",
            r.env,
            t.dir.display(),
            timing_line(&t.timings)
        ));
    }
    s.push_str(&format!(
        "signed by {}{}\n",
        r.signer.fingerprint,
        source_note(&r.source)
    ));
    s
}

fn print_plan(cx: &Context, plan: &Plan) {
    cx.printer.result(
        || {
            let mut s = format!(
                "plan: {} → {}{}\n",
                plan.env,
                plan.build,
                source_note(&plan.source)
            );
            for a in &plan.artifacts {
                let how = if a.cached { "in the cache" } else { "to fetch" };
                s.push_str(&format!(
                    "  {:<32} {:>10}  {how}\n",
                    a.name,
                    human_bytes(a.size)
                ));
            }
            for path in plan.files.keys() {
                s.push_str(&format!("  write {path}\n"));
            }
            for (dir, current) in &plan.current {
                s.push_str(&format!(
                    "  {}: current {} → {}\n",
                    dir.display(),
                    current.as_deref().unwrap_or("(none)"),
                    plan.build
                ));
            }
            s.push_str("nothing was changed (--plan)\n");
            s
        },
        || json!({ "ok": true, "plan": plan }),
    );
}
