//! What a build produces, typed: the kinds of artifact pipe knows
//! ([`ArtifactKind`], the one enum every kind is listed in), what an artifact
//! was built from ([`Component`]) and the manifest's entry for it
//! ([`Artifact`]).
//!
//! Adding a kind starts here: a new variant makes the compiler list every
//! `match` that must learn it (the kind's implementation in
//! [`crate::kinds`], the plan, the views that show it).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::store::BlobRef;

/// A kind of artifact. Serialised as its [`name`](ArtifactKind::name), which
/// is what manifests record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A Debian binary package (`.deb`).
    Deb,
    /// An RPM package (`.rpm`).
    Rpm,
    /// An OCI image: its manifest, configuration and layers, one artifact
    /// each (see [`crate::kinds`]'s image kind).
    OciImage,
    /// A baked machine disk image (`NAME.raw`, `NAME.qcow2`) and its bake
    /// record (`NAME.bake.json`).
    MachineImage,
}

impl ArtifactKind {
    /// Every kind, in the order a plan lists them.
    pub(crate) const ALL: [ArtifactKind; 4] = [
        ArtifactKind::Deb,
        ArtifactKind::Rpm,
        ArtifactKind::OciImage,
        ArtifactKind::MachineImage,
    ];

    /// The name manifests, plans and `--json` output use.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Deb => "deb",
            ArtifactKind::Rpm => "rpm",
            ArtifactKind::OciImage => "oci-image",
            ArtifactKind::MachineImage => "machine-image",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The section of `pipeline.toml` an artifact was built from. Serialised as
/// `package NAME` (what manifests have always recorded); images and machines
/// will be `image NAME` and `machine NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// `[packages.NAME]`.
    Package(String),
    /// `[images.NAME]`.
    Image(String),
    /// `[machines.NAME]`.
    Machine(String),
}

impl Component {
    /// The section's name (`hello` of `[packages.hello]`).
    pub fn name(&self) -> &str {
        match self {
            Component::Package(n) | Component::Image(n) | Component::Machine(n) => n,
        }
    }

    /// The package name, when the component is a package.
    pub(crate) fn package(&self) -> Option<&str> {
        match self {
            Component::Package(n) => Some(n),
            Component::Image(_) | Component::Machine(_) => None,
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Package(n) => write!(f, "package {n}"),
            Component::Image(n) => write!(f, "image {n}"),
            Component::Machine(n) => write!(f, "machine {n}"),
        }
    }
}

impl Serialize for Component {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Component {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once(' ') {
            Some(("package", name)) if !name.is_empty() => Ok(Component::Package(name.into())),
            Some(("image", name)) if !name.is_empty() => Ok(Component::Image(name.into())),
            Some(("machine", name)) if !name.is_empty() => Ok(Component::Machine(name.into())),
            _ => Err(serde::de::Error::custom(format!(
                "unknown component `{s}` (expected `package NAME`, `image NAME` or `machine NAME`)"
            ))),
        }
    }
}

/// One artifact of a build, as its manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// File name (`hello_1.2.0_all.deb`).
    pub name: String,
    /// Its kind.
    pub kind: ArtifactKind,
    /// What it was built from (`package hello`).
    pub component: Component,
    /// Content digests and size.
    pub blob: BlobRef,
    /// The stage's cache key.
    pub cache_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_components_keep_their_manifest_spelling() {
        assert_eq!(
            serde_json::to_string(&ArtifactKind::Deb).unwrap(),
            "\"deb\""
        );
        assert_eq!(
            serde_json::to_string(&ArtifactKind::Rpm).unwrap(),
            "\"rpm\""
        );
        for k in ArtifactKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        let c = Component::Package("hello".into());
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"package hello\"");
        let back: Component = serde_json::from_str("\"package hello\"").unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<Component>("\"thing hello\"").is_err());
        let m: Component = serde_json::from_str("\"machine web\"").unwrap();
        assert_eq!(m, Component::Machine("web".into()));
        assert_eq!(
            serde_json::to_string(&ArtifactKind::MachineImage).unwrap(),
            "\"machine-image\""
        );
        assert!(serde_json::from_str::<ArtifactKind>("\"oci\"").is_err());
    }
}
