//! `pipe promote`, `pipe rollback`, `pipe history`: move and show an
//! environment's pointer.

use keys::Keyring;
use pipeline::promote::{self, Request};
use pipeline::records::history::{history, verify_chain};
use pipeline::records::{Action, SignedEntry};
use pipeline::store::Store;
use pipeline::views::{self, Regenerated, ViewKind, ViewOutcome};
use pipeline::{Error, Result};
use serde_json::json;

use crate::Context;

async fn open(cx: &Context) -> Result<(&pipeline::model::Pipeline, Store)> {
    let p = cx.pipeline()?;
    let url = cx.store_url(Some(p))?;
    let store = cx.open_store(&url).await?;
    Ok((p, store))
}

/// The signing key and the project's keyring, which everything read from the
/// store is verified against before anything is signed.
fn signer(cx: &Context) -> Result<(keys::SecretKey, Keyring)> {
    let key = cx.signing_key()?;
    let ring = super::keys::project_keyring(&key, &cx.signing_key_path()?)?;
    Ok((key, ring))
}

/// The latest local build, when no build is named.
fn latest_build(cx: &Context) -> Result<String> {
    let dir = pipeline::build::build_dir(&cx.dir, None)?;
    Ok(dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string())
}

pub async fn promote(cx: &Context, build: Option<&str>, to: &str, force: bool) -> Result<()> {
    let (p, store) = open(cx).await?;
    let (key, keyring) = signer(cx)?;
    let build = match build {
        Some(b) => b.to_string(),
        None => latest_build(cx)?,
    };
    let outcome = promote::promote(
        p,
        &store,
        &key,
        &keyring,
        &Request {
            env: to,
            build: &build,
            force,
            action: Action::Promote,
        },
    )
    .await?;
    report(cx, &outcome, None)
}

pub async fn rollback(cx: &Context, env: &str, to: Option<u64>) -> Result<()> {
    let (p, store) = open(cx).await?;
    let (key, keyring) = signer(cx)?;
    let outcome = promote::rollback(p, &store, &key, &keyring, env, to).await?;
    // Hosts never downgrade by themselves: say what makes them follow.
    let follow = if outcome.moved {
        let shards = pipeline::records::index::ShardCache::new(&p.dir);
        let published =
            pipeline::records::index::load_cached(&store, &outcome.entry.build, &keyring, &shards)
                .await?;
        Some(promote::host_follow(&published.index, &p.repository.origin))
    } else {
        None
    };
    report(cx, &outcome, follow.as_ref())
}

/// Prints the outcome; a view that failed makes the command fail (exit 1)
/// after the report, the pointer staying where it moved.
fn report(
    cx: &Context,
    outcome: &promote::Outcome,
    follow: Option<&promote::HostFollow>,
) -> Result<()> {
    let e = &outcome.entry;
    cx.printer.result(
        || {
            let mut s = if outcome.moved {
                format!(
                    "{} {} → {} (entry {}, {}{})",
                    e.env,
                    outcome.previous_build.as_deref().unwrap_or("(nothing)"),
                    e.build,
                    e.seq,
                    e.action,
                    if e.forced { ", forced" } else { "" }
                )
            } else {
                format!("{} already points at {} (entry {}); nothing changed", e.env, e.build, e.seq)
            };
            if let Some(r) = &outcome.repositories {
                s.push('\n');
                s.push_str(&describe(r));
            }
            if let Some(f) = follow {
                s.push_str("\nhosts do not downgrade by themselves (`apt-get upgrade` and `dnf upgrade` never install an older version):");
                if let Some(cmd) = &f.apt_install {
                    s.push_str(&format!("\n  apt: {cmd}"));
                }
                if let Some((path, pin)) = &f.apt_pin {
                    s.push_str(&format!(
                        "\n       or once per host, so `apt-get upgrade` follows every rollback: write {path}:\n         {}",
                        pin.trim_end().replace('\n', "\n         ")
                    ));
                }
                if let Some(cmd) = &f.dnf_distro_sync {
                    s.push_str(&format!("\n  dnf: {cmd}"));
                }
            }
            s
        },
        || json!({ "ok": outcome.repositories.as_ref().is_none_or(|r| r.failed().next().is_none()), "moved": outcome.moved, "entry": e, "previous_build": outcome.previous_build, "repositories": outcome.repositories, "hosts": follow }),
    );
    match &outcome.repositories {
        Some(r) => views_failed(r),
        None => Ok(()),
    }
}

/// The error for views that failed, if any.
fn views_failed(r: &Regenerated) -> Result<()> {
    let failed: Vec<String> = r
        .failed()
        .map(|(v, e)| format!("{}: {e}", v.name()))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Views {
        env: r.env.clone(),
        build: r.build.clone(),
        failed,
    })
}

/// One line per regenerated environment, and one per view that did not
/// regenerate.
fn describe(r: &Regenerated) -> String {
    let views: Vec<&str> = [r.apt_suite.as_deref(), r.yum_repo.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    format!(
        "  {}: {} packages in {} ({} files written, {} packages linked, {} expired removed, {:.2} s){}",
        r.env,
        r.packages,
        if views.is_empty() {
            "no repository".to_string()
        } else {
            views.join(" and ")
        },
        r.written,
        r.linked,
        r.removed,
        r.seconds,
        r.valid_until
            .as_deref()
            .map(|v| format!(", valid until {v}"))
            .unwrap_or_default()
    ) + &r
        .views
        .iter()
        .filter_map(|v| match &v.outcome {
            ViewOutcome::Superseded { seq } => Some(format!(
                "\n  {} view: a newer entry ({seq}) is shown already; nothing written",
                v.view.name()
            )),
            ViewOutcome::Failed { error } => {
                Some(format!("\n  {} view: FAILED: {error}", v.view.name()))
            }
            ViewOutcome::Done(g) if v.view == ViewKind::RegistryTag => {
                g.location.as_ref().map(|l| {
                    format!(
                        "\n  registry: {l} ({} tag(s) moved in {:.3} s; {:.3} s with the view's claim and state)",
                        g.written,
                        v.work_seconds.unwrap_or(v.seconds),
                        v.seconds
                    )
                })
            }
            ViewOutcome::Done(g) if v.view == ViewKind::MachinePointer => g
                .location
                .as_ref()
                .map(|l| format!("\n  machine image pointers: {l} (signed: .json.asc)")),
            _ => None,
        })
        .collect::<String>()
}

/// `pipe refresh`: re-sign the repositories of `envs` (default: every
/// environment with a pointer) with a new date.
pub async fn refresh(cx: &Context, envs: &[String]) -> Result<()> {
    let (p, store) = open(cx).await?;
    let (key, keyring) = signer(cx)?;
    let names: Vec<String> = if envs.is_empty() {
        p.environments.iter().map(|e| e.name.clone()).collect()
    } else {
        for env in envs {
            if !p.environments.iter().any(|e| &e.name == env) {
                return Err(Error::Usage {
                    message: format!("environment `{env}` is not declared in pipeline.toml"),
                    hint: None,
                });
            }
        }
        envs.to_vec()
    };
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    for env in &names {
        match views::refresh(p, &store, &key, &keyring, env).await? {
            Some(r) => done.push(r),
            None => skipped.push(env.clone()),
        }
    }
    cx.printer.result(
        || {
            let mut s: Vec<String> = done.iter().map(describe).collect();
            for env in &skipped {
                s.push(format!("  {env}: points at no build; nothing to sign"));
            }
            s.join("\n")
        },
        || json!({ "ok": done.iter().all(|r| r.failed().next().is_none()), "refreshed": done, "skipped": skipped }),
    );
    done.iter().try_for_each(views_failed)
}

pub async fn show_history(
    cx: &Context,
    env: &str,
    keyring: Option<&std::path::Path>,
) -> Result<()> {
    // Reads only the store: no pipeline.toml needed with `--store`. The
    // environment must be declared when there is one, and be a valid name
    // always: it becomes a store key.
    let pipeline = cx.pipeline_if_any()?;
    match pipeline {
        Some(p) => {
            p.environment(env)?;
        }
        None => {
            if let Err((message, hint)) = pipeline::model::rules::environment_name(env) {
                return Err(Error::Usage {
                    message,
                    hint: Some(hint),
                });
            }
        }
    }
    let url = cx.store_url(pipeline)?;
    let store = cx.open_store(&url).await?;
    let entries: Vec<SignedEntry> = history(&store, env).await?;
    let ring = match keyring {
        Some(path) => Some(Keyring::load(&cx.dir.join(path))?),
        None => None,
    };
    verify_chain(env, &entries, ring.as_ref())?;
    cx.printer.answer(
        || {
            let mut s = String::new();
            for e in entries.iter().map(|s| &s.entry) {
                s.push_str(&format!(
                    "{:>4}  {}  {:<28} {:<9}{} by {}\n",
                    e.seq,
                    e.at,
                    e.build,
                    e.action,
                    if e.forced { " (forced)" } else { "" },
                    e.actor
                ));
            }
            if entries.is_empty() {
                s.push_str(&format!("`{env}` has no history yet\n"));
            }
            s.push_str(if ring.is_some() {
                "chain intact; every entry signed by a key in the keyring\n"
            } else {
                "chain intact (signatures not checked: pass --keyring)\n"
            });
            s
        },
        || json!({ "ok": true, "env": env, "entries": entries, "signatures_checked": ring.is_some() }),
    );
    Ok(())
}
