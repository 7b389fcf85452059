//! One module per command. Each builds its result from the library and hands
//! the printer a human and a JSON form.

pub mod build;
pub mod deploy;
pub mod fsck;
pub mod init;
pub mod keys;
pub mod promote;
pub mod publish;
pub mod registry;
pub mod status;
pub mod validate;
pub mod verify;

use pipeline::Result;
use pipeline::model::{PIPELINE_FILE, Pipeline};
use pipeline::store::{Network, OpenOptions, Store, StoreUrl};

use crate::Context;

/// The default local store, next to `pipeline.toml`.
pub const DEFAULT_STORE: &str = ".pipe/store";

impl Context {
    /// The project's `pipeline.toml`, loaded and validated on first use
    /// without reading its input files (what the commands that work on the
    /// store need); the commands and the helpers here (signing key, store
    /// URL) share it.
    pub fn pipeline(&self) -> Result<&Pipeline> {
        if let Some(p) = self.checked.get().or_else(|| self.pipeline.get()) {
            return Ok(p);
        }
        let loaded = Pipeline::load_model(&self.dir)?;
        Ok(self.pipeline.get_or_init(|| loaded))
    }

    /// The project's `pipeline.toml` with every input file it names checked
    /// (stat, resolved, read), each problem at its position: `pipe
    /// validate` and `pipe build`.
    pub fn pipeline_with_inputs(&self) -> Result<&Pipeline> {
        if let Some(p) = self.checked.get() {
            return Ok(p);
        }
        let loaded = Pipeline::load(&self.dir)?;
        Ok(self.checked.get_or_init(|| loaded))
    }

    /// The store to use: `--store`/`$PIPE_STORE`, else `[store] url`, else the
    /// default local directory. Relative paths resolve against the project.
    pub fn store_url(&self, pipeline: Option<&Pipeline>) -> Result<StoreUrl> {
        let url = self
            .store_override
            .clone()
            .or_else(|| pipeline.and_then(|p| p.store.url.clone()))
            .unwrap_or_else(|| DEFAULT_STORE.to_string());
        StoreUrl::parse(&url, &self.dir)
    }

    /// Opens the store at `url` with the global options (`--unsafe-no-cas`),
    /// the network settings of the flags over those of `[store]` (when
    /// `pipeline.toml` was loaded).
    pub async fn open_store(&self, url: &StoreUrl) -> Result<Store> {
        let file = self
            .pipeline
            .get()
            .map(|p| p.store.network.clone())
            .unwrap_or_default();
        let flags = &self.network;
        let network = Network {
            connect_timeout: flags.connect_timeout.or(file.connect_timeout),
            request_timeout: flags.request_timeout.or(file.request_timeout),
            timeout: flags.timeout.or(file.timeout),
            attempts: flags.attempts.or(file.attempts),
            no_sign: flags.no_sign || file.no_sign,
        };
        Store::open(
            url,
            &OpenOptions {
                unsafe_no_cas: self.unsafe_no_cas,
                network,
            },
        )
        .await
    }

    /// `pipeline.toml` for a command that reads only the store: loaded when
    /// there is one, or when no `--store` says where the store is (then it
    /// is required); `None` in a directory without one when `--store` is
    /// given.
    pub fn pipeline_if_any(&self) -> Result<Option<&Pipeline>> {
        if self.has_pipeline() || self.store_override.is_none() {
            Ok(Some(self.pipeline()?))
        } else {
            Ok(None)
        }
    }

    /// True when the project directory has a `pipeline.toml`.
    pub fn has_pipeline(&self) -> bool {
        self.dir.join(PIPELINE_FILE).exists()
    }
}

/// `1536` → `1.50 KiB` (indicatif's formatter, the one the progress bars use).
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
