//! `pipe promote` and `pipe rollback`: move an environment's pointer, then
//! regenerate its consumer views.
//!
//! The pointer write (a compare-and-swap, `history::put_pointer`) is the
//! commit point: of two concurrent promotions exactly one wins and the other
//! has written nothing. Then the history copy, then every view
//! (`crate::views::run`); a view that fails is reported and does not undo
//! the pointer (`pipe refresh` completes it).

use keys::{Keyring, SecretKey};
use serde::Serialize;

use crate::model::Pipeline;
use crate::records::history::{self, read_pointer, repair_history};
use crate::records::{Action, Entry, SignedEntry, index};
use crate::store::Store;
use crate::views::{self, Mode, Regenerated};
use crate::{Error, Result, fault};

/// What a promotion asks for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The environment.
    pub env: &'a str,
    /// The build.
    pub build: &'a str,
    /// Bypass the `from` rule (recorded in the entry).
    pub force: bool,
    /// Promote or rollback.
    pub action: Action,
}

/// What a promotion did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The entry now at the head (the existing one when nothing changed).
    pub entry: Entry,
    /// False when the environment already pointed at the build.
    pub moved: bool,
    /// The build it pointed at before.
    pub previous_build: Option<String>,
    /// The views regenerated for it; `None` when they all showed it already.
    pub repositories: Option<Regenerated>,
}

/// Moves `req.env` to `req.build`, signing the entry with `key`, then
/// regenerates the environment's views.
///
/// Nothing the store holds is believed before it verifies against
/// `keyring`, the project's public keys: the build's records and package
/// index ([`index::load`]), the environment's history up to its pointer,
/// and the history of the environment it takes builds from. A store
/// someone else wrote to stops the promotion with exit 3 before anything is
/// signed or written.
pub async fn promote(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    keyring: &Keyring,
    req: &Request<'_>,
) -> Result<Outcome> {
    let env = p.environment(req.env)?;
    let published =
        index::load_cached(store, req.build, keyring, &index::ShardCache::new(&p.dir)).await?;
    let (head, version) = read_pointer(store, req.env).await?;
    // Histories verified before on this machine are extended, not read again.
    let cache = history::HistoryCache::new(&p.dir, store.url());
    history::check_head_cached(store, req.env, head.as_ref(), keyring, Some(&cache)).await?;
    if let Some(head) = &head {
        repair_history(store, head).await?;
    }
    if let Some(from) = &env.from
        && !req.force
        && req.action == Action::Promote
        && !history::verified_history_cached(store, from, keyring, Some(&cache))
            .await?
            .iter()
            .any(|e| e.entry.build == req.build)
    {
        return Err(Error::Usage {
            message: format!(
                "build `{}` was never in `{from}`, and `{}` takes builds from `{from}`",
                req.build, req.env
            ),
            hint: Some(format!(
                "promote it to `{from}` first, or pass `--force` (recorded in the history)"
            )),
        });
    }
    if let Some(head) = &head
        && head.entry.build == req.build
        && req.action == Action::Promote
    {
        // A promotion killed after moving the pointer (or a view that
        // failed) left the freshness statement or views behind: finish
        // their work.
        let fresh = history::read_freshness(store, req.env).await?;
        if history::verify_freshness(
            &head.entry,
            fresh.as_ref(),
            keyring,
            std::time::SystemTime::now(),
            false,
        )
        .is_err()
        {
            history::stamp(store, key, &head.entry, p.repository.head_valid_for).await?;
        }
        let repositories = if views::all_current(store, req.env, head.entry.seq).await? {
            None
        } else {
            tracing::info!(env = req.env, "views lag the pointer; regenerating");
            Some(views::run(p, store, key, head, &published, Mode::IfBehind).await?)
        };
        return Ok(Outcome {
            entry: head.entry.clone(),
            moved: false,
            previous_build: Some(head.entry.build.clone()),
            repositories,
        });
    }

    let signed = Entry::next(head.as_ref(), req.env, req.build, req.action, req.force).sign(key)?;
    fault::barrier();
    fault::point("before-pointer");
    history::put_pointer(store, &signed, head.as_ref(), version.as_ref()).await?;
    fault::point("after-pointer");
    history::write_history_copy(store, &signed).await?;
    fault::point("after-history");
    history::stamp(store, key, &signed.entry, p.repository.head_valid_for).await?;
    let repositories = Some(views::run(p, store, key, &signed, &published, Mode::IfBehind).await?);
    Ok(Outcome {
        entry: signed.entry,
        moved: true,
        previous_build: head.map(|h| h.entry.build),
        repositories,
    })
}

/// The entry `pipe rollback` moves back to: entry `to` when given, else the
/// newest entry that points somewhere else than the head.
pub(crate) fn rollback_target<'a>(
    env: &str,
    entries: &'a [SignedEntry],
    to: Option<u64>,
) -> Result<&'a SignedEntry> {
    let Some(head) = entries.last() else {
        return Err(Error::Usage {
            message: format!("environment `{env}` has no history to roll back"),
            hint: Some(format!("promote a build to `{env}` first")),
        });
    };
    match to {
        Some(seq) => entries
            .iter()
            .find(|e| e.entry.seq == seq)
            .ok_or_else(|| Error::Usage {
                message: format!("`{env}` has no history entry {seq}"),
                hint: Some(format!("`pipe history {env}` lists them")),
            }),
        None => entries
            .iter()
            .rev()
            .find(|e| e.entry.build != head.entry.build)
            .ok_or_else(|| Error::Usage {
                message: format!("`{env}` has only ever pointed at {}", head.entry.build),
                hint: None,
            }),
    }
}

/// Rolls `env` back (see `rollback_target`): a promotion to an earlier
/// entry's build, recorded as a rollback.
///
/// Which build to go back to is read from the history: only a history the
/// project's keys signed (`history::verified_history`) is believed.
pub async fn rollback(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    keyring: &Keyring,
    env: &str,
    to: Option<u64>,
) -> Result<Outcome> {
    let cache = history::HistoryCache::new(&p.dir, store.url());
    let entries = history::verified_history_cached(store, env, keyring, Some(&cache)).await?;
    let build = rollback_target(env, &entries, to)?.entry.build.clone();
    promote(
        p,
        store,
        key,
        keyring,
        &Request {
            env,
            build: &build,
            force: false,
            action: Action::Rollback,
        },
    )
    .await
}

/// What hosts run to follow a rollback: `apt-get upgrade` and `dnf upgrade`
/// never install an older version, so a host that already took the newer
/// build stays on it until told.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostFollow {
    /// apt: install the rolled-back versions, downgrading.
    pub apt_install: Option<String>,
    /// apt, once per host: pin the origin at priority 1000, so `apt-get
    /// upgrade` follows every rollback of the suite by itself; the file's
    /// path and content.
    pub apt_pin: Option<(String, String)>,
    /// dnf: sync the packages to the repository's versions, downgrading.
    pub dnf_distro_sync: Option<String>,
}

/// [`HostFollow`] for a build's packages; `origin` is the apt `Origin`
/// (`[repository] origin`).
pub fn host_follow(index: &index::BuildIndex, origin: &str) -> HostFollow {
    let mut debs: Vec<String> = index
        .debs
        .iter()
        .map(|d| format!("{}={}", d.stanza.package, d.stanza.version))
        .collect();
    debs.sort();
    debs.dedup();
    let mut rpms: Vec<String> = index.rpms.iter().map(|r| r.xml.nevra.0.clone()).collect();
    rpms.sort();
    rpms.dedup();
    HostFollow {
        apt_install: (!debs.is_empty())
            .then(|| format!("apt-get install --allow-downgrades {}", debs.join(" "))),
        apt_pin: (!debs.is_empty()).then(|| {
            // apt ignores a preferences.d file whose name has other
            // characters than these.
            let file: String = origin
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            (
                format!("/etc/apt/preferences.d/{file}.pref"),
                format!("Package: *\nPin: release o={origin}\nPin-Priority: 1000\n"),
            )
        }),
        dnf_distro_sync: (!rpms.is_empty()).then(|| format!("dnf distro-sync {}", rpms.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, build: &str) -> SignedEntry {
        SignedEntry {
            entry: Entry {
                seq,
                env: "dev".into(),
                build: build.into(),
                previous: None,
                actor: "t".into(),
                at: "2026-01-01T00:00:00Z".into(),
                action: "promote".into(),
                forced: false,
                nonce: String::new(),
            },
            signature: String::new(),
        }
    }

    #[test]
    fn hosts_follow_with_every_package_at_its_version_and_a_pin_file_apt_reads() {
        let deb = |package: &str, version: &str| index::IndexedDeb {
            artifact: format!("{package}_{version}_all.deb"),
            sha256: String::new(),
            stanza: repo_index::apt::Stanza {
                package: package.into(),
                version: version.into(),
                architecture: "all".into(),
                filename: String::new(),
                text: String::new(),
            },
        };
        let rpm = |name: &str| index::IndexedRpm {
            artifact: format!("{name}.rpm"),
            sha256: String::new(),
            xml: repo_index::yum::PackageXml {
                pkgid: String::new(),
                nevra: (name.into(), "noarch".into(), 0, "1.0".into(), "1".into()),
                primary: String::new(),
                filelists: String::new(),
                other: String::new(),
            },
        };
        let idx = index::BuildIndex {
            format: 1,
            debs: vec![deb("b", "1.0~rc1"), deb("a", "1.0")],
            rpms: vec![rpm("b"), rpm("a")],
            images: vec![],
            machines: vec![],
        };
        let f = host_follow(&idx, "Acme Corp/apt");
        assert_eq!(
            f.apt_install.as_deref(),
            Some("apt-get install --allow-downgrades a=1.0 b=1.0~rc1")
        );
        let (path, pin) = f.apt_pin.unwrap();
        assert_eq!(path, "/etc/apt/preferences.d/Acme-Corp-apt.pref");
        assert_eq!(
            pin,
            "Package: *\nPin: release o=Acme Corp/apt\nPin-Priority: 1000\n"
        );
        assert_eq!(f.dnf_distro_sync.as_deref(), Some("dnf distro-sync a b"));
        let none = host_follow(
            &index::BuildIndex {
                format: 1,
                debs: vec![],
                rpms: vec![],
                images: vec![],
                machines: vec![],
            },
            "x",
        );
        assert_eq!(none.apt_install, None);
        assert_eq!(none.dnf_distro_sync, None);
    }

    #[test]
    fn rollback_picks_the_newest_other_build_or_the_named_entry() {
        let h = [entry(1, "a"), entry(2, "b"), entry(3, "b")];
        assert_eq!(rollback_target("dev", &h, None).unwrap().entry.seq, 1);
        assert_eq!(rollback_target("dev", &h, Some(2)).unwrap().entry.seq, 2);
        assert!(rollback_target("dev", &h, Some(9)).is_err());
        assert!(rollback_target("dev", &h[..1], None).is_err());
        assert!(rollback_target("dev", &[], None).is_err());
    }
}
