//! `pipe verify`: check a build's signatures and every artifact against them.

use keys::Keyring;
use pipeline::Result;
use pipeline::build::{build_dir, verify::verify_build};
use serde_json::json;

use crate::Context;
use crate::cli::VerifyArgs;

pub async fn run(cx: &Context, args: &VerifyArgs) -> Result<()> {
    let dir = build_dir(&cx.dir, args.build.as_deref())?;
    let keyring = Keyring::load(&cx.dir.join(&args.keyring))?;
    let report = verify_build(&dir, &keyring).await?;
    cx.printer.result(
        || {
            let mut s = String::new();
            for c in &report.checks {
                s.push_str(&format!("ok  {:<32} {}\n", c.what, c.detail));
            }
            s.push_str(&format!("build {} verified\n", report.build));
            s
        },
        || json!({ "ok": true, "build": report.build, "signer": report.signer, "checks": report.checks }),
    );
    Ok(())
}
