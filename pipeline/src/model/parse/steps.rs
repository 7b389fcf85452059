//! `[steps.NAME]`: build steps, and the check that each input glob matches
//! a file of the project or another step's output.

use super::*;

const STEP_KEYS: &[&str] = &["run", "inputs", "outputs", "env"];

impl Cx<'_> {
    /// A step input glob that matches no file, and cannot match another
    /// step's outputs either, fails the build; say so now, at the glob.
    pub(super) fn check_step_globs(&mut self) {
        if self.inputs != Inputs::Check {
            return;
        }
        let globs = std::mem::take(&mut self.step_globs);
        let mut files: Option<Vec<String>> = None;
        for (step, glob, span) in globs {
            let Ok(m) = globset::GlobBuilder::new(&glob)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
            else {
                self.error(
                    span,
                    format!("input `{glob}` of step `{step}` is not a valid glob"),
                    Some("`*` matches within a directory, `**` across directories".into()),
                );
                continue;
            };
            let from_a_step = self.step_outputs.iter().any(|(out, s)| {
                s != &step && (m.is_match(out) || glob.starts_with(&format!("{out}/")))
            });
            if from_a_step {
                continue;
            }
            let own: Vec<&str> = self
                .step_outputs
                .iter()
                .filter(|(_, s)| *s == step)
                .map(|(o, _)| o.as_str())
                .collect();
            let files = files.get_or_insert_with(|| project_files(self.dir));
            let matched = files.iter().any(|f| {
                m.is_match(f)
                    && !own
                        .iter()
                        .any(|o| f == o || f.starts_with(&format!("{o}/")))
            });
            if !matched {
                self.error(
                    span,
                    format!("input `{glob}` of step `{step}` matches no file"),
                    Some(format!(
                        "globs are relative to the directory holding pipeline.toml ({}); a build would stop here",
                        shown_dir(self.dir)
                    )),
                );
            }
        }
    }

    /// The step whose declared output is `src` or contains it.
    pub(super) fn step_producing(&self, src: &str) -> Option<String> {
        let src = src.trim_end_matches('/');
        self.step_outputs
            .iter()
            .find(|(out, _)| {
                src == out
                    || src
                        .strip_prefix(out.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .map(|(_, step)| step.clone())
    }

    pub(super) fn steps(&mut self, root: &DeTable<'_>) -> BTreeMap<String, Step> {
        let mut out = BTreeMap::new();
        let Some(t) = field(root, "steps").and_then(|(_, v)| self.table(v, "`steps`")) else {
            return out;
        };
        for (key, v) in t {
            let name = key.get_ref().to_string();
            if let Err(violation) = rules::simple_name("step", &name) {
                self.violation(key.span(), violation);
            }
            let Some(st) = self.table(v, &format!("`steps.{name}`")) else {
                continue;
            };
            self.check_keys(st, &format!("`[steps.{name}]`"), STEP_KEYS, None);
            let at = |k: &str| format!("`steps.{name}.{k}`");
            let run = self
                .required(
                    st,
                    "run",
                    v.span(),
                    &format!("`[steps.{name}]`"),
                    "add the command to run, e.g. `run = \"make\"`",
                )
                .and_then(|rv| self.nonempty_string(rv, &at("run")));
            let inputs: Vec<String> = field(st, "inputs")
                .map(|(_, iv)| self.checked_list(iv, &at("inputs"), rules::relative_path))
                .unwrap_or_default()
                .into_iter()
                .map(|(g, span)| {
                    self.step_globs.push((name.clone(), g.clone(), span));
                    g
                })
                .collect();
            let outputs: Vec<String> = field(st, "outputs")
                .map(|(_, ov)| self.checked_list(ov, &at("outputs"), rules::relative_path))
                .unwrap_or_default()
                .into_iter()
                .map(|(o, _)| o)
                .collect();
            if outputs.is_empty() {
                self.error(v.span(), format!("`[steps.{name}]` declares no `outputs`"),
                    Some("list the files the step writes, e.g. `outputs = [\"build/hello\"]`: only declared outputs are cached and packaged".into()));
            }
            let mut env = BTreeMap::new();
            if let Some((_, ev)) = field(st, "env")
                && let Some(et) = self.table(ev, &at("env"))
            {
                for (k, val) in et {
                    if let Some(s) =
                        self.string(val, &format!("`steps.{name}.env.{}`", k.get_ref()))
                    {
                        env.insert(k.get_ref().to_string(), s);
                    }
                }
            }
            if let Some(run) = run {
                out.insert(
                    name.clone(),
                    Step {
                        name,
                        run,
                        inputs,
                        outputs,
                        env,
                    },
                );
            }
        }
        out
    }
}

/// Every file under `dir` (relative, `/`-separated), as a step's inputs see
/// them: pipe's own state and git's left out.
fn project_files(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(e.depth() == 1 && (name == ".pipe" || name == ".git"))
        })
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_type().is_dir())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()?
                .to_str()
                .map(str::to_string)
        })
        .collect()
}
