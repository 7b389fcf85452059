//! `pipe build`: run the build steps and stages, each only when its cache key
//! is not built yet.

use pipeline::Result;
use pipeline::build::epoch::source_date_epoch;
use pipeline::build::steps::{StepStatus, run_steps};
use pipeline::store::{OpenOptions, Store};
use serde_json::json;

use crate::Context;

pub async fn run(cx: &Context) -> Result<()> {
    let p = cx.pipeline()?;
    let (epoch, epoch_source) = source_date_epoch(&p)?;
    let url = cx.store_url(Some(&p))?;
    let store = Store::open(
        &url,
        &OpenOptions {
            unsafe_no_cas: cx.unsafe_no_cas,
        },
    )
    .await?;
    let steps = run_steps(&p, &store, epoch).await?;

    cx.printer.result(
        || {
            let mut s = String::new();
            for st in &steps {
                let what = match st.status {
                    StepStatus::Ran => format!("ran in {:.2}s", st.seconds),
                    StepStatus::Restored => "restored from the store (cache hit)".to_string(),
                    StepStatus::UpToDate => "up to date (cache hit)".to_string(),
                };
                s.push_str(&format!(
                    "step {:<16} {what}, {} output file(s)\n",
                    st.name,
                    st.outputs.len()
                ));
            }
            if steps.is_empty() {
                s.push_str("no steps to run\n");
            }
            s
        },
        || {
            json!({
                "ok": true,
                "source_date_epoch": { "value": epoch, "from": epoch_source },
                "steps": steps,
            })
        },
    );
    Ok(())
}
