//! The `pipe` command: parses arguments, sets up logging and output once, and
//! hands each command to the library. Exit codes follow DESIGN.md.

mod cli;
mod commands;
mod printer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeline::error::EXIT_USAGE;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use printer::Printer;

/// What every command gets: where the project is, which store, how to print.
pub struct Context {
    pub dir: PathBuf,
    pub store_override: Option<String>,
    pub unsafe_no_cas: bool,
    /// `--connect-timeout`, `--request-timeout`, `--timeout`, `--attempts`,
    /// `--no-sign`; they take precedence over `[store]`.
    pub network: pipeline::store::Network,
    pub json: bool,
    pub printer: Printer,
    /// `pipeline.toml`, loaded and validated once, on first use, without
    /// its input files.
    pipeline: std::sync::OnceLock<pipeline::model::Pipeline>,
    /// `pipeline.toml` and its input files checked (validate, build).
    checked: std::sync::OnceLock<pipeline::model::Pipeline>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            if code != 0 && json_requested() {
                // Scripts get one document on every failure, usage included.
                let message = e.kind().to_string();
                let detail = e.render().to_string();
                println!(
                    "{:#}",
                    serde_json::json!({
                        "ok": false,
                        "error": {
                            "message": message,
                            "detail": detail.trim_end(),
                            "hint": "see `pipe --help`, or `pipe COMMAND --help`",
                            "exit_code": code,
                        }
                    })
                );
            }
            return ExitCode::from(code as u8);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let printer = Printer::new(cli.json, cli.quiet);
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => PathBuf::from("."),
    };
    let cx = Context {
        dir,
        store_override: cli.store.clone(),
        unsafe_no_cas: cli.unsafe_no_cas,
        network: pipeline::store::Network {
            connect_timeout: cli.connect_timeout,
            request_timeout: cli.request_timeout,
            timeout: cli.timeout,
            attempts: cli.attempts,
            no_sign: cli.no_sign,
        },
        json: cli.json,
        printer,
        pipeline: std::sync::OnceLock::new(),
        checked: std::sync::OnceLock::new(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init => commands::init::run(&cx),
            Command::Validate => commands::validate::run(&cx),
            Command::Status => commands::status::run(&cx).await,
            Command::Fsck(args) => commands::fsck::run(&cx, &args).await,
            Command::Registry(cli::RegistryCommand::Seed) => commands::registry::seed(&cx).await,
            Command::Build {
                plan,
                threads,
                compress_memory,
            } => {
                pipeline::build::set_compressor_limits(threads, compress_memory);
                commands::build::run(&cx, plan).await
            }
            Command::Keys(cmd) => commands::keys::run(&cx, &cmd).await,
            Command::Deploy(args) => commands::deploy::deploy(&cx, &args).await,
            Command::Fetch(args) => commands::deploy::fetch(&cx, &args).await,
            Command::Verify(args) => commands::verify::run(&cx, &args).await,
            Command::Publish { build, read_back } => {
                commands::publish::run(&cx, build.as_deref(), read_back).await
            }
            Command::Promote { build, to, force } => {
                commands::promote::promote(&cx, build.as_deref(), &to, force).await
            }
            Command::Rollback { env, to } => commands::promote::rollback(&cx, &env, to).await,
            Command::Refresh { env } => commands::promote::refresh(&cx, &env).await,
            Command::History { env, keyring } => {
                commands::promote::show_history(&cx, &env, keyring.as_deref()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cx.printer.error(&e);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// `--json` among the arguments before `--`, for a command line clap
/// refused (so there is no parsed value to ask).
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn init_logging(verbose: u8, quiet: bool) {
    // Without `-v`, only pipe's own warnings: a dependency's (the AWS
    // credential chain trying its providers) is noise to someone who did
    // not ask; what it means reaches the user as pipe's error.
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "error,pipeline=warn,pipe=warn",
        (false, 1) => "info,pipeline=debug,pipe=debug",
        (false, _) => "debug,pipeline=trace,pipe=trace",
    };
    let filter = EnvFilter::try_from_env("PIPE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, and never under NO_COLOR
    // (https://no-color.org: set and not empty).
    let colour = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
