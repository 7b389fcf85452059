//! One implementation of [`Kind`] per [`ArtifactKind`]: everything pipe
//! needs to plan, key, build, restore and publish an artifact of that kind.
//! Nothing outside this module and [`crate::artifact`] matches on a kind's
//! name; [`of`] is the one `match` from the enum to its implementation.
//!
//! The work is split so that the build can run it anywhere:
//! - [`Kind::nodes`] lists the artifacts of this kind a `pipeline.toml`
//!   declares, as plan nodes (no I/O);
//! - [`Kind::prepare`] resolves the node's inputs and computes its cache key
//!   (blocking, reads the inputs once);
//! - [`Kind::write`] writes the node's outputs as files into a directory
//!   (blocking; stream to the file, as a 2 GiB disk image must), each of
//!   which becomes one blob and one manifest entry;
//! - [`Kind::describe`] records what the consumer views need of an output
//!   (cached with the stage record, so a promotion reads no artifact);
//! - [`Kind::pool_key`] says where publish copies an output for consumers
//!   that fetch it by path (the apt/yum pool), if anywhere.
//!
//! Restoring from the cache and storing outputs is generic
//! ([`crate::build::plan`](mod@crate::build::plan)): an output is a file, a blob, an entry.

mod deb;
mod image;
mod machine;
mod package;
mod rpm;

use std::any::Any;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::artifact::{Artifact, ArtifactKind, Component};
use crate::build::plan::ArtifactNode;
use crate::model::Pipeline;
use crate::records::{Fragment, Input};

/// What building one artifact node needs besides the model.
#[derive(Clone)]
pub struct StageContext {
    /// The project directory.
    pub dir: PathBuf,
    /// The timestamp every artifact is clamped to.
    pub epoch: u64,
    /// The key that signs inside artifacts (rpm), when there is one.
    pub signer: Option<keys::SecretKey>,
}

/// A node's inputs, resolved and keyed.
pub struct Prepared {
    /// The cache key: the digest of everything that can change the outputs.
    pub key: String,
    /// The input files (relative to the project directory) with digests,
    /// for the manifest.
    pub inputs: Vec<Input>,
    /// Whatever the kind resolved that [`Kind::write`] needs (a file tree).
    pub work: Box<dyn Any + Send>,
    /// The outputs, when only the inputs tell how many there are (an
    /// image: one per layer, and the base's layers are known once the base
    /// is read); `None`: the node's.
    pub outputs: Option<Vec<String>>,
}

/// What [`Kind::write`] hands back besides the files.
#[derive(Default)]
pub struct Written {
    /// Outputs the kind hashed itself as it wrote them (a machine's images,
    /// hashed while `qemu-img` reads them): the build stores each with
    /// these digests instead of reading it again, if the file is still as
    /// it was when hashed.
    pub hashed: Vec<HashedOutput>,
    /// Work left once the outputs are written (removing a scratch tree),
    /// run while they are stored and waited for before the node is done.
    pub cleanup: Option<Cleanup>,
}

/// Work [`Written::cleanup`] leaves for the build to run. Blocking.
pub type Cleanup = Box<dyn FnOnce() -> Result<()> + Send>;

/// An output [`Kind::write`] hashed.
pub struct HashedOutput {
    /// The output's file name.
    pub name: String,
    /// Its digests.
    pub blob: crate::store::BlobRef,
    /// The file's metadata when it was hashed.
    pub metadata: std::fs::Metadata,
}

/// One artifact kind.
pub trait Kind: Send + Sync {
    /// Which kind this implements.
    fn kind(&self) -> ArtifactKind;

    /// The artifacts of this kind `p` declares, one node each, in a stable
    /// order. No I/O.
    fn nodes(&self, p: &Pipeline) -> Vec<ArtifactNode>;

    /// Resolves `node`'s inputs and computes its cache key. Blocking. Bad
    /// input (a vanished file, a symlink leaving the project) fails here,
    /// before anything is written to the store.
    fn prepare(&self, p: &Pipeline, cx: &StageContext, node: &ArtifactNode) -> Result<Prepared>;

    /// Writes `node.outputs` (file names) into `out_dir`. Blocking.
    fn write(
        &self,
        p: &Pipeline,
        cx: &StageContext,
        node: &ArtifactNode,
        prepared: Prepared,
        out_dir: &Path,
    ) -> Result<Written>;

    /// What the consumer views need of the output `artifact` at `path`
    /// (`None`: nothing). Blocking. `file_time` is the build's timestamp.
    fn describe(
        &self,
        path: &Path,
        artifact: &Artifact,
        file_time: u64,
    ) -> Result<Option<Fragment>>;

    /// Where publish copies `artifact` inside the store for consumers that
    /// fetch it by path; `None` when it is only a blob.
    fn pool_key(&self, artifact: &Artifact) -> Option<String>;

    /// True when the artifact carries a signature made with the project key
    /// (its cache key covers the key's fingerprint, so it is known only
    /// with the key).
    fn signs(&self) -> bool {
        false
    }

    /// Makes derived files from the node's outputs once they are all in
    /// `out_dir` (built or restored from the cache): files of the build
    /// directory that are not artifacts themselves, because they can be
    /// made again from them (an image's layout tarball). Blocking.
    fn assemble(
        &self,
        _p: &Pipeline,
        _node: &ArtifactNode,
        _outputs: &[Artifact],
        _out_dir: &Path,
    ) -> Result<()> {
        Ok(())
    }

    /// True when an artifact's file name stands for one content forever
    /// (`packages/<artifact>.json`, create-only: a package version is never
    /// reused). Machine images are named by machine, not version, and are
    /// found through the build's manifest and the machine pointer instead.
    fn versioned(&self) -> bool {
        true
    }

    /// The architecture `artifact` installs on (Debian's or rpm's name),
    /// when `pipe deploy` installs artifacts of this kind; `None` otherwise.
    fn deploy_arch(&self, artifact: &Artifact) -> Option<String>;
}

/// The implementation of `kind`.
pub fn of(kind: ArtifactKind) -> &'static dyn Kind {
    match kind {
        ArtifactKind::Deb => &deb::Deb,
        ArtifactKind::Rpm => &rpm::Rpm,
        ArtifactKind::OciImage => &image::OciImage,
        ArtifactKind::MachineImage => &machine::MachineImage,
    }
}

/// Every kind, in plan order.
pub(crate) fn all() -> impl Iterator<Item = &'static dyn Kind> {
    ArtifactKind::ALL.into_iter().map(of)
}

/// The component of a package.
pub(crate) fn package_component(name: &str) -> Component {
    Component::Package(name.to_string())
}
