//! The one place that decides what goes to stdout and stderr: human text or a
//! single JSON document, quiet or not. Commands hand it both forms.

use std::io::Write;

use pipeline::Error;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
    quiet: bool,
}

impl Printer {
    pub fn new(json: bool, quiet: bool) -> Self {
        Printer { json, quiet }
    }

    /// The result of a command: `human` for people, `machine` under `--json`.
    pub fn result(&self, human: impl FnOnce() -> String, machine: impl FnOnce() -> Value) {
        if self.json {
            print_json(&machine());
        } else if !self.quiet {
            let text = human();
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = out.write_all(b"\n");
            }
        }
    }

    /// The answer of a query command (status, history, keys list): like
    /// [`Printer::result`], but printed under `-q` too, which silences
    /// everything except what was asked for (and errors).
    pub fn answer(&self, human: impl FnOnce() -> String, machine: impl FnOnce() -> Value) {
        Printer {
            json: self.json,
            quiet: false,
        }
        .result(human, machine)
    }

    /// A spinner on stderr for work that may take more than a second; hidden
    /// under `--json`, `-q`, or when stderr is not a terminal.
    pub fn spinner(&self, message: &'static str) -> indicatif::ProgressBar {
        use std::io::IsTerminal;
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new_spinner().with_message(message);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// A byte-count progress bar on stderr, under the same conditions as
    /// [`Printer::spinner`].
    pub fn bytes_bar(&self, total: u64, message: &'static str) -> indicatif::ProgressBar {
        use std::io::IsTerminal;
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(total).with_message(message);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style);
        }
        bar
    }

    /// A failure: the message and hint on stderr, and under `--json` the same
    /// as a JSON document on stdout so machines always get one document.
    pub fn error(&self, err: &Error) {
        let mut text = match err {
            Error::Config(_) => err.to_string(),
            _ => format!("error: {err}"),
        };
        if let Some(hint) = err.hint() {
            text.push_str(&format!("\n  hint: {hint}"));
        }
        eprintln!("{text}");
        // Views that failed after the pointer moved, damage fsck found: the
        // command's own document (`"ok": false`, each view's error) is already out.
        if self.json && !matches!(err, Error::Views { .. } | Error::Damaged { .. }) {
            let mut error = serde_json::Map::new();
            error.insert("message".into(), json!(err.to_string()));
            error.insert("hint".into(), json!(err.hint()));
            error.insert("exit_code".into(), json!(err.exit_code()));
            if let Error::Config(diags) = err {
                error.insert(
                    "message".into(),
                    json!(format!(
                        "{} problem(s) in {}",
                        diags.len(),
                        diags.file().display()
                    )),
                );
                error.insert(
                    "diagnostics".into(),
                    json!(
                        diags
                            .iter()
                            .map(|d| json!({
                                "file": diags.file(),
                                "line": d.line,
                                "column": d.column,
                                "message": d.message,
                                "hint": d.hint,
                            }))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            print_json(&json!({ "ok": false, "error": error }));
        }
    }
}

fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = out.write_all(b"\n");
}
