//! Which artifact of each package this machine installs.

use std::collections::BTreeMap;

use super::unpack::Format;
use crate::artifact::{Artifact, ArtifactKind};
use crate::{Error, Result};

/// The architectures this machine runs: Debian's and rpm's name, and the
/// architecture-independent ones.
fn host_arches() -> [&'static str; 4] {
    let (deb, rpm) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", "x86_64"),
        "aarch64" => ("arm64", "aarch64"),
        "arm" => ("armhf", "armv7hl"),
        "x86" => ("i386", "i686"),
        "powerpc64" => ("ppc64el", "ppc64le"),
        "s390x" => ("s390x", "s390x"),
        "riscv64" => ("riscv64", "riscv64"),
        other => (other, other),
    };
    [deb, rpm, "all", "noarch"]
}

/// Per package (all of the build's, or `[deploy] packages`), the artifact for
/// this machine: the `.deb` when there is one, else the `.rpm`.
pub(super) fn select(
    artifacts: &[Artifact],
    wanted: &[String],
    build: &str,
) -> Result<Vec<(Artifact, Format)>> {
    let arches = host_arches();
    let mut by_package: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for a in artifacts {
        if let Some(name) = a.component.package() {
            by_package.entry(name).or_default().push(a);
        }
    }
    let names: Vec<&str> = if wanted.is_empty() {
        by_package.keys().copied().collect()
    } else {
        wanted.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for name in names {
        let Some(candidates) = by_package.get(name) else {
            return Err(Error::Usage {
                message: format!(
                    "`[deploy] packages` names `{name}`, which build `{build}` does not contain"
                ),
                hint: Some(
                    "deploy a build that has it, or remove it from `[deploy] packages`".into(),
                ),
            });
        };
        let arch_of = |a: &Artifact| -> Option<(String, Format)> {
            let arch = crate::kinds::of(a.kind).deploy_arch(a)?;
            let format = match a.kind {
                ArtifactKind::Deb => Format::Deb,
                ArtifactKind::Rpm => Format::Rpm,
                // deploy_arch is None for images: never reached.
                ArtifactKind::OciImage => return None,
                // `deploy_arch` is `None` for machine images: never here.
                ArtifactKind::MachineImage => return None,
            };
            Some((arch, format))
        };
        let mut fitting: Vec<(&Artifact, Format)> = candidates
            .iter()
            .filter_map(|a| {
                let (arch, format) = arch_of(a)?;
                arches.contains(&arch.as_str()).then_some((*a, format))
            })
            .collect();
        fitting.sort_by_key(|(_, f)| *f != Format::Deb);
        match fitting.first() {
            Some((a, f)) => out.push(((*a).clone(), *f)),
            None => {
                return Err(Error::Usage {
                    message: format!(
                        "package `{name}` of build `{build}` has no artifact for this machine ({} or {})",
                        arches[0], arches[2]
                    ),
                    hint: Some(format!(
                        "its artifacts: {}",
                        candidates
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                });
            }
        }
    }
    Ok(out)
}
