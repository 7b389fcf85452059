//! View states: `views/<env>/<view>.json`, what a consumer view of an
//! environment was last generated from, and who is generating it now.
//!
//! Every write of a view state is conditional on the version read, so the
//! state is the one place where regenerations of one view of one
//! environment meet (see [`crate::views`] for the protocol).

use serde::{Deserialize, Serialize};

use crate::store::{Body, Condition, Store, Version, layout};
use crate::{Error, Result};

/// The state of one view of one environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ViewState {
    /// The history entry (sequence number) the view shows; 0 for none.
    pub seq: u64,
    /// The build the view shows.
    pub build: String,
    /// When it was generated (RFC 3339).
    pub generated_at: String,
    /// A regeneration in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// What the view itself keeps between generations (apt: the digests of
    /// its indices and the files of replaced generations).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A regeneration in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    /// The history entry it generates.
    pub seq: u64,
    /// Unique per regeneration.
    pub owner: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it claimed (Unix seconds).
    pub since: u64,
}

/// The state of `view` of `env` and its version token (`None`: no state yet).
pub(crate) async fn read(
    store: &Store,
    env: &str,
    view: &str,
) -> Result<(ViewState, Option<Version>)> {
    Ok(
        match store
            .get_json_max::<ViewState>(
                &layout::view_state(env, view),
                "a view state",
                crate::store::MAX_RECORD,
            )
            .await?
        {
            Some((s, v)) => (s, Some(v)),
            None => (ViewState::default(), None),
        },
    )
}

/// Writes the state of `view` of `env` if it is still at `version`; returns
/// the new version, or [`Error::Conflict`] when another writer came first.
pub(crate) async fn put(
    store: &Store,
    env: &str,
    view: &str,
    state: &ViewState,
    version: Option<&Version>,
) -> Result<Version> {
    let key = layout::view_state(env, view);
    let cond = match version {
        Some(v) => Condition::IfMatch(v.clone()),
        None => Condition::IfAbsent,
    };
    let bytes = crate::json::to_vec_pretty(state);
    match store.put(&key, Body::from_bytes(bytes), cond).await {
        Ok(v) => Ok(v),
        Err(Error::AlreadyExists { key }) => Err(Error::Conflict {
            key,
            expected: None,
            found: Some("a state written by a concurrent regeneration".into()),
        }),
        Err(e) => Err(e),
    }
}
