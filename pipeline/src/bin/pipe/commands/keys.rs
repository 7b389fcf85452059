//! `pipe keys`: the project's OpenPGP signing key and the public keyring
//! consumers trust.

use std::path::{Path, PathBuf};

use keys::{Algorithm, Encoding, GenerateOptions, Keyring, RotateOptions, SecretKey};
use pipeline::{Error, Result};
use serde_json::json;

use crate::Context;
use crate::cli::{KeysCommand, KeysExport, KeysGenerate, KeysRotate};

/// Where the project's key lives when `pipeline.toml` does not say.
const DEFAULT_KEY: &str = "keys/release.key";

pub async fn run(cx: &Context, cmd: &KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate(args) => generate(cx, args),
        KeysCommand::Export(args) => export(cx, args),
        KeysCommand::List { keyring } => list(cx, keyring.as_deref()),
        KeysCommand::Rotate(args) => rotate(cx, args).await,
    }
}

impl Context {
    /// The signing key path: `$PIPE_SIGNING_KEY`, else `[signing] key`, else
    /// `keys/release.key`; relative to the project directory.
    pub fn signing_key_path(&self) -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("PIPE_SIGNING_KEY") {
            return Ok(self.dir.join(p));
        }
        let configured = if self.has_pipeline() {
            self.pipeline()?.signing.key.clone()
        } else {
            None
        };
        Ok(self.dir.join(configured.as_deref().unwrap_or(DEFAULT_KEY)))
    }

    /// Loads the signing key, unlocking it with `$PIPE_SIGNING_PASSPHRASE`.
    pub fn signing_key(&self) -> Result<SecretKey> {
        let path = self.signing_key_path()?;
        if !path.exists() {
            return Err(Error::Usage {
                message: format!("no signing key at {}", path.display()),
                hint: Some(
                    "create one with `pipe keys generate --uid \"Name <email>\"`, or point `[signing] key` / $PIPE_SIGNING_KEY at yours"
                        .into(),
                ),
            });
        }
        let key = SecretKey::load(&path, passphrase().as_deref())?;
        private_file(&path)?;
        Ok(key)
    }
}

/// Refuses a secret key file that group or others may read or write, as
/// ssh does: whoever can read it signs as the project.
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Usage {
            message: format!(
                "the secret key {} is accessible by group or others (mode {:o}, expected 600)",
                path.display(),
                mode & 0o7777
            ),
            hint: Some(format!(
                "`chmod 600 {}`, and make sure it was never readable by anyone else",
                path.display()
            )),
        });
    }
    Ok(())
}

fn passphrase() -> Option<String> {
    std::env::var("PIPE_SIGNING_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
}

fn generate(cx: &Context, args: &KeysGenerate) -> Result<()> {
    let path = match &args.out {
        Some(p) => cx.dir.join(p),
        None => cx.signing_key_path()?,
    };
    let algorithm: Algorithm = args.algo.parse()?;
    let mut opts = GenerateOptions::new(&args.uid);
    opts.algorithm = algorithm;
    opts.passphrase = passphrase();
    opts.validity = args.expires;
    // Checked before the (slow) key generation, and again by `write_new`,
    // which never overwrites.
    if path.exists() {
        return Err(keys::Error::FileExists { path }.into());
    }
    let key = SecretKey::generate(&opts)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    key.write_new(&path)?;
    let info = key.info();
    cx.printer.result(
        || {
            format!(
                "wrote {} ({}, {}{})\nfingerprint {}\nnext: `pipe keys export --armor > release.asc` gives consumers the public key",
                path.display(),
                info.algorithm,
                info.user_ids.join(", "),
                if opts.passphrase.is_some() { ", passphrase-protected" } else { "" },
                info.fingerprint
            )
        },
        || json!({ "ok": true, "path": path, "key": info, "protected": opts.passphrase.is_some() }),
    );
    Ok(())
}

/// The public keyring to hand consumers: the signing key, plus the keyring
/// `rotate` left next to it (old keys stay trusted for what they signed).
fn public_keyring(cx: &Context) -> Result<Keyring> {
    project_keyring(&cx.signing_key()?, &cx.signing_key_path()?)
}

/// The project's keyring: the public part of `key` (loaded from
/// `key_path`) and the keyring `rotate` left next to it. What promote,
/// rollback and refresh verify the store against, never a keyring found in
/// the store.
pub fn project_keyring(key: &SecretKey, key_path: &Path) -> Result<Keyring> {
    let mut ring = key.public_keyring();
    let local = local_keyring_path(key_path);
    if local.exists() {
        ring.merge(&Keyring::load(&local)?)?;
    }
    Ok(ring)
}

use pipeline::rotate::local_keyring_path;

fn export(cx: &Context, args: &KeysExport) -> Result<()> {
    let ring = public_keyring(cx)?;
    let encoding = if args.binary {
        Encoding::Binary
    } else {
        Encoding::Armored
    };
    let bytes = ring.to_bytes(encoding)?;
    match &args.out {
        Some(out) => {
            let path = cx.dir.join(out);
            std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
            cx.printer.result(
                || format!("wrote {} ({} key(s))", path.display(), ring.keys().len()),
                || json!({ "ok": true, "path": path, "keys": ring.keys() }),
            );
        }
        None if cx.json => {
            let armored = ring.to_bytes(Encoding::Armored)?;
            cx.printer.result(String::new, || {
                json!({ "ok": true, "armored": String::from_utf8_lossy(&armored), "keys": ring.keys() })
            });
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .map_err(|e| Error::io("<stdout>", e))?;
        }
    }
    Ok(())
}

fn list(cx: &Context, keyring: Option<&Path>) -> Result<()> {
    let keys = match keyring {
        Some(path) => Keyring::load(&cx.dir.join(path))?.keys(),
        None => {
            let mut keys = vec![cx.signing_key()?.info()];
            let local = local_keyring_path(&cx.signing_key_path()?);
            if local.exists() {
                for k in Keyring::load(&local)?.keys() {
                    if !keys.iter().any(|x| x.fingerprint == k.fingerprint) {
                        keys.push(k);
                    }
                }
            }
            keys
        }
    };
    cx.printer.answer(
        || {
            let mut s = String::new();
            for k in &keys {
                s.push_str(&format!(
                    "{}  {}{}\n",
                    k.fingerprint,
                    k.algorithm,
                    if k.secret { "  (secret)" } else { "" }
                ));
                for uid in &k.user_ids {
                    s.push_str(&format!("    uid      {uid}\n"));
                }
                s.push_str(&format!("    created  {}\n", k.created));
                match &k.expires {
                    Some(t) => s.push_str(&format!("    expires  {t}\n")),
                    None => s.push_str("    expires  never\n"),
                }
                if let Some(r) = &k.revoked {
                    s.push_str(&format!("    revoked  {}\n", r.reason));
                }
                for by in &k.certified_by {
                    s.push_str(&format!("    certified by {by}\n"));
                }
            }
            s
        },
        || json!({ "ok": true, "keys": keys }),
    );
    Ok(())
}

async fn rotate(cx: &Context, args: &KeysRotate) -> Result<()> {
    let key_path = cx.signing_key_path()?;
    let old = cx.signing_key()?;
    let old_info = old.info();
    let uid = match &args.uid {
        Some(u) => u.clone(),
        None => old_info
            .user_ids
            .first()
            .cloned()
            .ok_or_else(|| Error::Usage {
                message: format!("key {} has no user ID to carry over", old_info.fingerprint),
                hint: Some("pass `--uid \"Name <email>\"`".into()),
            })?,
    };
    let mut new_key = GenerateOptions::new(uid);
    new_key.algorithm = args.algo.parse()?;
    new_key.passphrase = passphrase();
    let url = cx.store_url(cx.pipeline_if_any()?)?;
    let store = cx.open_store(&url).await?;
    let r = pipeline::rotate::rotate(
        &store,
        &key_path,
        &old,
        &RotateOptions {
            new_key,
            retire_old: args.retire,
        },
    )
    .await?;
    cx.printer.result(
        || {
            format!(
                "new signing key {} written to {}\nold key {} moved to {}{}\nkeyring with both keys: {} and `{}` in the store {url}\nnext: hand consumers the new keyring (`pipe keys export`)",
                r.new_key.fingerprint,
                r.key_path.display(),
                r.old_key.fingerprint,
                r.old_key_path.display(),
                if r.retired { " and revoked as superseded" } else { "" },
                r.keyring.display(),
                r.store_keyring,
            )
        },
        || {
            json!({
                "ok": true,
                "new_key": r.new_key,
                "old_key": r.old_key,
                "old_key_path": r.old_key_path,
                "retired": r.retired,
                "keyring": r.keyring,
                "store_keyring": r.store_keyring,
            })
        },
    );
    Ok(())
}
