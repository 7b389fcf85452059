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
    Build,
    /// Show what the store holds: builds, and what each environment points at.
    Status,
}
