//! The build plan: a typed, serialisable value of everything a build does,
//! made from `pipeline.toml` before anything runs. Build steps first, in
//! dependency order, then one node per artifact (each package in each
//! format; later each image and machine image), each with its kind, its
//! inputs, its outputs and, where it can be known before running anything,
//! its cache key.
//!
//! `pipe validate` summarises it, `pipe build --plan` prints it (`--json`
//! too), and `pipe build` executes exactly this value
//! ([`crate::build::execute`]): the nodes it runs are the plan's nodes, the
//! artifacts it records are their outputs, and a key known at planning time
//! must still be the key when the node runs.

use serde::{Deserialize, Serialize};

use super::steps;
use crate::artifact::{ArtifactKind, Component};
use crate::kinds::{self, StageContext};
use crate::model::Pipeline;
use crate::{Error, Result};

/// What a build of one `pipeline.toml` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Project name.
    pub project: String,
    /// Project version.
    pub version: String,
    /// The build steps, in the order they run.
    pub steps: Vec<StepNode>,
    /// The artifact nodes, kind by kind.
    pub artifacts: Vec<ArtifactNode>,
    /// Sections `pipeline.toml` declares that this pipe does not build yet
    /// (`images.hello`): no node, no artifact, a warning.
    pub not_built: Vec<NotBuilt>,
}

/// A build step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepNode {
    /// Step name.
    pub name: String,
    /// The command.
    pub run: String,
    /// Globs of the files it reads.
    pub inputs: Vec<String>,
    /// Paths it writes.
    pub outputs: Vec<String>,
    /// Steps whose outputs it reads (they run first).
    pub after: Vec<String>,
    /// Its cache key, when it reads no other step's outputs (else it is
    /// known only once those ran).
    pub cache_key: Option<String>,
}

/// One artifact node: its outputs become artifacts of its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactNode {
    /// `KIND NAME` (`deb hello`), unique in a plan.
    pub id: String,
    /// The kind.
    pub kind: ArtifactKind,
    /// The section it is built from.
    pub component: Component,
    /// What it reads, as declared.
    pub inputs: Vec<PlanInput>,
    /// Steps whose outputs it reads.
    pub after_steps: Vec<String>,
    /// The file names it writes: each one blob and one manifest entry.
    pub outputs: Vec<String>,
    /// Its cache key, when it reads no step's outputs.
    #[serde(default)]
    pub cache_key: Option<String>,
}

impl ArtifactNode {
    /// The one file of a node of a kind that writes one file per node (a
    /// package); a plan whose node names none or several is refused.
    pub(crate) fn single_output(&self) -> Result<&str> {
        match self.outputs.as_slice() {
            [one] => Ok(one),
            other => Err(Error::Usage {
                message: format!(
                    "the plan's node `{}` names {} output files, expected 1",
                    self.id,
                    other.len()
                ),
                hint: Some("make the plan again from this pipeline.toml".into()),
            }),
        }
    }
}

/// A declared input of an artifact node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum PlanInput {
    /// A `files` entry: `src` in the project, `dst` in the artifact.
    File {
        /// Source, relative to the project directory.
        src: String,
        /// Destination.
        dst: String,
    },
    /// A machine's base root filesystem tarball.
    Rootfs {
        /// Path relative to the project directory.
        path: String,
    },
    /// A package of the build, installed into a machine image (its key is
    /// part of the machine's).
    Package {
        /// The package name.
        name: String,
    },
    /// A maintainer script, or a machine's post-install script
    /// (`which = "post_install"`).
    Script {
        /// `postinst`, ...
        which: String,
        /// Path relative to the project directory.
        path: String,
    },
    /// A documentation file the package carries (`license_file`,
    /// `changelog`).
    Doc {
        /// `license_file` or `changelog`.
        which: String,
        /// Path relative to the project directory.
        path: String,
    },
}

/// A declared section no node builds yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotBuilt {
    /// `images.hello`, `machines.web`.
    pub section: String,
    /// Why.
    pub reason: String,
    /// Where it is declared in `pipeline.toml` (1-based line), when known.
    pub line: Option<usize>,
    /// And column.
    pub column: Option<usize>,
}

impl Plan {
    /// The plan of `p`. No I/O: keys are left out (`Plan::keyed` adds
    /// them).
    pub fn new(p: &Pipeline) -> Result<Plan> {
        let steps = steps::dependencies(p)?
            .into_iter()
            .map(|(s, after)| StepNode {
                name: s.name.clone(),
                run: s.run.clone(),
                inputs: s.inputs.clone(),
                outputs: s.outputs.clone(),
                after,
                cache_key: None,
            })
            .collect();
        let artifacts = kinds::all().flat_map(|k| k.nodes(p)).collect();
        // Every section pipe reads is built; a section added before its
        // kind lands is listed here with its position.
        let not_built = Vec::new();
        Ok(Plan {
            project: p.project.name.clone(),
            version: p.project.version.clone(),
            steps,
            artifacts,
            not_built,
        })
    }

    /// Fills in every cache key that can be known before anything runs:
    /// those of steps and artifacts that read no step's outputs (and, for a
    /// kind that signs inside its artifacts, only with the key). Blocking:
    /// reads and hashes their inputs.
    pub(crate) fn keyed(mut self, p: &Pipeline, cx: &StageContext) -> Result<Plan> {
        for s in self.steps.iter_mut().filter(|s| s.after.is_empty()) {
            s.cache_key = Some(steps::key(&p.dir, steps::declared(p, &s.name)?, cx.epoch)?.0);
        }
        for a in self.artifacts.iter_mut().filter(|a| {
            a.after_steps.is_empty() && (cx.signer.is_some() || !kinds::of(a.kind).signs())
        }) {
            let prepared = kinds::of(a.kind).prepare(p, cx, a)?;
            // A kind that knows its outputs only from its inputs (an image's
            // layers) names them now.
            if let Some(outputs) = prepared.outputs {
                a.outputs = outputs;
            }
            a.cache_key = Some(prepared.key);
        }
        Ok(self)
    }

    /// Every artifact file the plan produces, in plan order.
    pub fn outputs(&self) -> impl Iterator<Item = (&ArtifactNode, &str)> {
        self.artifacts
            .iter()
            .flat_map(|a| a.outputs.iter().map(move |o| (a, o.as_str())))
    }

    /// Human-readable rendering, one line per node.
    pub fn render(&self) -> String {
        let key = |k: &Option<String>, after: &[String]| match k {
            Some(k) => format!("key {}", &k[..16.min(k.len())]),
            None if after.is_empty() => "key needs the signing key".to_string(),
            None => format!("key after {}", after.join(", ")),
        };
        let mut s = format!(
            "plan for {} {}: {} step(s), {} artifact(s)\n",
            self.project,
            self.version,
            self.steps.len(),
            self.outputs().count()
        );
        for st in &self.steps {
            s.push_str(&format!(
                "  step {:<20} {}  reads {}  writes {}\n",
                st.name,
                key(&st.cache_key, &st.after),
                join_or_none(&st.inputs),
                join_or_none(&st.outputs)
            ));
        }
        for a in &self.artifacts {
            s.push_str(&format!(
                "  {:<4} {:<20} {}  from {} ({} input(s))  writes {}\n",
                a.kind.name(),
                a.component.name(),
                key(&a.cache_key, &a.after_steps),
                a.component,
                a.inputs.len(),
                a.outputs.join(", ")
            ));
        }
        for n in &self.not_built {
            s.push_str(&format!("  {}\n", n.warning()));
        }
        s
    }
}

impl NotBuilt {
    /// `warning: [images.hello] (line 52) ...`.
    pub fn warning(&self) -> String {
        let at = match (self.line, self.column) {
            (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
            _ => String::new(),
        };
        format!(
            "warning: [{}]{at} is declared, but {}: a build makes nothing for it",
            self.section, self.reason
        )
    }
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(outputs: &[&str]) -> ArtifactNode {
        ArtifactNode {
            id: "deb hello".into(),
            kind: ArtifactKind::Deb,
            component: Component::Package("hello".into()),
            inputs: Vec::new(),
            after_steps: Vec::new(),
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
            cache_key: None,
        }
    }

    #[test]
    fn a_package_node_has_exactly_one_output() {
        assert_eq!(node(&["hello.deb"]).single_output().unwrap(), "hello.deb");
        for outputs in [&[][..], &["a.deb", "b.deb"][..]] {
            let e = node(outputs).single_output().unwrap_err().to_string();
            assert!(
                e.contains(&format!("names {} output files, expected 1", outputs.len())),
                "{e}"
            );
        }
    }
}
