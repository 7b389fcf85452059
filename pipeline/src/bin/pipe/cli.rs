//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// pipe: build once, deploy prebuilt, signed, content-addressed artifacts.
#[derive(Debug, Parser)]
#[command(name = "pipe", version, about, propagate_version = true)]
pub struct Cli {
    /// Run as if started in DIR (where `pipeline.toml` is).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Store to use: a directory or `s3://bucket/prefix` (overrides `[store] url`).
    #[arg(long, global = true, env = "PIPE_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Print one JSON document on stdout; logs and progress stay on stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Accept an S3 server that ignores conditional writes. Concurrent
    /// promotions may then overwrite each other.
    #[arg(long, global = true)]
    pub unsafe_no_cas: bool,

    /// S3: limit on opening a connection (`5s`; overrides `[store]
    /// connect_timeout`).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<std::time::Duration>,

    /// S3: limit on one attempt waiting for its answer, and on a download
    /// stalling (`60s`; overrides `[store] request_timeout`).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<std::time::Duration>,

    /// S3: deadline of one store operation, retries included (`3m`;
    /// overrides `[store] timeout`).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// S3: attempts per request, the first included; throttling, 5xx and
    /// timeouts are retried with backoff (5; overrides `[store] attempts`).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: Option<u32>,

    /// S3: send requests unsigned, needing no credentials, to read a bucket
    /// that allows anonymous reads (like `aws s3 --no-sign-request`).
    #[arg(long, global = true)]
    pub no_sign: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter `pipeline.toml` and ignore `.pipe/` in git.
    Init,
    /// Check `pipeline.toml` and summarise what would be built.
    Validate,
    /// Run the build steps and build every artifact whose inputs changed.
    Build {
        /// Print the build plan (steps, artifact nodes, their inputs,
        /// outputs and cache keys) and run nothing.
        #[arg(long)]
        plan: bool,
        /// Compressor threads of all package writers together, and package
        /// writers at once (default: the cores). The artifacts' bytes do not
        /// depend on it.
        #[arg(long, env = "PIPE_THREADS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
        threads: Option<u32>,
        /// Memory all compressors may hold together (`512M`, `1G`; default
        /// 512M). A compressor larger than that still runs, alone.
        #[arg(long, env = "PIPE_COMPRESS_MEMORY", value_name = "SIZE", value_parser = parse_size)]
        compress_memory: Option<u64>,
    },
    /// Upload a build (default: the latest) into the store; blobs already
    /// there are skipped.
    Publish {
        /// The build id.
        build: Option<String>,
        /// Read back every blob the store already has and upload again any
        /// that is damaged (without it, only a missing blob or one of the
        /// wrong size is).
        #[arg(long)]
        read_back: bool,
    },
    /// Point an environment at a published build (default: the latest).
    Promote {
        /// The build id.
        build: Option<String>,
        /// The environment.
        #[arg(long)]
        to: String,
        /// Skip the `from` rule of pipeline.toml (recorded in the history).
        #[arg(long)]
        force: bool,
    },
    /// Point an environment back at an earlier build, as a new history entry.
    Rollback {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The history entry to go back to (default: the newest entry that
        /// points at another build than now).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
    },
    /// Re-sign the apt and yum repositories of environments (default: all
    /// with a pointer) with a new date, before `Valid-Until` passes; also
    /// finishes a regeneration a killed promotion left undone.
    Refresh {
        /// The environment (repeatable).
        #[arg(long)]
        env: Vec<String>,
    },
    /// An environment's signed, hash-chained history; checks the chain.
    History {
        /// The environment.
        env: String,
        /// Also check every entry's signature against this keyring.
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
    },
    /// Check a build's signed manifest and provenance, and every artifact's
    /// digests and size against them. Exit code 3 on any mismatch.
    Verify(VerifyArgs),
    /// Deploy what an environment points at into target directories:
    /// verified against your keyring, unpacked into `DIR/releases/BUILD`,
    /// switched to atomically through `DIR/current`. Never builds.
    Deploy(DeployArgs),
    /// Fetch and verify what an environment points at into the targets'
    /// caches (`DIR/.pipe/cache`), so a later deploy works offline.
    Fetch(FetchArgs),
    /// The project's signing key and the public keyring consumers trust.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show what the store holds: builds, and what each environment points at.
    Status,
    /// Read the whole store and report every object that does not verify:
    /// blobs against their digest, builds against their signatures, pool
    /// files against their blob, histories, apt and yum repositories
    /// against the signed build they show. Exit code 3 if anything is wrong.
    Fsck(FsckArgs),
    /// The OCI registry of `[registry]`.
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Fill the registry from the store alone: every published build's
    /// images under the build id (with their provenance), and every
    /// environment's tags. What the registry has costs one request per tag.
    Seed,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key (never overwrites an existing file).
    Generate(KeysGenerate),
    /// Print the public keyring: armored for `rpm --import` and `pipe deploy
    /// --keyring`, binary for apt's `signed-by=`.
    Export(KeysExport),
    /// Show fingerprints, algorithms, creation and expiry.
    List {
        /// List this keyring file instead of the project's keys.
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
    },
    /// Make a new signing key certified by the current one, and publish the
    /// keyring with both in the store.
    Rotate(KeysRotate),
}

#[derive(Debug, clap::Args)]
pub struct KeysGenerate {
    /// User ID, `Name <email>`.
    #[arg(long)]
    pub uid: String,
    /// Key algorithm. RSA is what apt's gpgv, GnuPG and rpm on RHEL 8/9 all accept.
    #[arg(long, default_value = "rsa4096", value_parser = ["rsa4096", "rsa3072", "ed25519"])]
    pub algo: String,
    /// Where to write it (default: `[signing] key`, else keys/release.key).
    /// The passphrase, if any, comes from $PIPE_SIGNING_PASSPHRASE.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Let the key expire this long after its creation (`90d`, `2y`, `12h`,
    /// `30s`). Default: never.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires: Option<std::time::Duration>,
}

/// `30s`, `12h`, `90d`, `2y`.
fn parse_size(s: &str) -> Result<u64, String> {
    pipeline::model::rules::size(s).map_err(|(message, hint)| format!("{message}: {hint}"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    pipeline::model::rules::duration(s).map_err(|(message, hint)| format!("{message}: {hint}"))
}

#[derive(Debug, clap::Args)]
pub struct KeysExport {
    /// ASCII-armored (the default).
    #[arg(long, conflicts_with = "binary")]
    pub armor: bool,
    /// Binary OpenPGP packets, for apt's `signed-by=`.
    #[arg(long)]
    pub binary: bool,
    /// Write to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct KeysRotate {
    /// User ID of the new key (default: the current key's).
    #[arg(long)]
    pub uid: Option<String>,
    /// Algorithm of the new key.
    #[arg(long, default_value = "rsa4096", value_parser = ["rsa4096", "rsa3072", "ed25519"])]
    pub algo: String,
    /// Also revoke the old key as superseded: what it signed before stays
    /// valid, anything it signs afterwards is refused.
    #[arg(long)]
    pub retire: bool,
}

#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// Repair what can be: regenerate the views from the signed builds (as
    /// `pipe refresh`), upload again the blobs and records the local build
    /// directories hold (as `pipe publish`), restore a history copy or a
    /// pointer from the other; then check again. Needs the signing key.
    #[arg(long)]
    pub repair: bool,
    /// With `--repair`, also take lost blobs from DIR: a directory of
    /// build directories, or a deploy target (its `.pipe/cache`); every
    /// file is checked against its digest first (repeatable).
    #[arg(long, value_name = "DIR", requires = "repair")]
    pub from: Vec<PathBuf>,
    /// The public keyring to verify against (default: the project's, from
    /// its signing key).
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The build id (default: the latest build).
    pub build: Option<String>,
    /// The public keyring to trust (from `pipe keys export`); keys found
    /// elsewhere are never used.
    #[arg(long, value_name = "FILE")]
    pub keyring: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The environment whose build to deploy.
    #[arg(long)]
    pub env: Option<String>,
    /// A target directory (repeat for several; deployed concurrently).
    #[arg(long = "target", value_name = "DIR")]
    pub targets: Vec<PathBuf>,
    /// A file listing target directories, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub targets_file: Option<PathBuf>,
    /// The public keyring to trust (from `pipe keys export`); keys found in
    /// the store are never used.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Accept a head older than, or not descending from, the one a target
    /// verified last (the store serves an older or another history).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Accept a head whose signed freshness statement expired or is
    /// missing (`pipe refresh` renews it).
    #[arg(long)]
    pub allow_expired: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// A template value for `[deploy] files`: `--set port=8080` fills
    /// `{{ port }}` (repeatable; `PIPE_VAR_port` in the environment too).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Show what would be fetched and written; change nothing.
    #[arg(long, conflicts_with_all = ["check", "reset"])]
    pub plan: bool,
    /// List files of the current release that differ from what was
    /// deployed (exit 3 if any).
    #[arg(long, conflicts_with = "reset")]
    pub check: bool,
    /// Re-create the release from the artifacts even if it is current,
    /// restoring any file changed since.
    #[arg(long)]
    pub reset: bool,
    /// Releases to keep per target, the current one included.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Instead of unpacking packages into targets: fetch and verify the
    /// promoted image of `[machines.NAME]` into `--out`, with a cloud-init
    /// NoCloud seed carrying the `[deploy] files` of the environment.
    #[arg(long, value_name = "NAME", requires = "out", conflicts_with_all = ["plan", "check", "reset"])]
    pub machine: Option<String>,
    /// Where `--machine` writes the images and the seed.
    #[arg(long, value_name = "DIR", requires = "machine")]
    pub out: Option<PathBuf>,
    /// The seed image `--machine` writes beside `DIR/seed/`.
    #[arg(long, value_enum, default_value_t = SeedKind::Iso, requires = "machine")]
    pub seed: SeedKind,
}

/// A NoCloud seed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedKind {
    /// ISO 9660, volume `cidata` (`seed.iso`).
    Iso,
    /// FAT, label `CIDATA` (`seed.vfat`).
    Vfat,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `NAME=VALUE`.
fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}
