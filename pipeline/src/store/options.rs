//! How a store is opened: [`OpenOptions`], the network settings of an S3
//! store ([`Network`] and its defaults) and [`S3Overrides`].

use std::time::Duration;

use serde::Serialize;

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Accept an S3 server that ignores conditional writes. Compare-and-swap
    /// then silently degrades to last-writer-wins; a warning is logged.
    pub unsafe_no_cas: bool,
    /// Timeouts, retries and signing of requests to an S3 store.
    pub network: Network,
}

/// Connect timeout unless [`Network::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request timeout (until the first byte of the answer; between two
/// bytes of a body read) unless [`Network::request_timeout`] says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of one store operation, retries included, unless
/// [`Network::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts per request unless [`Network::attempts`], `AWS_MAX_ATTEMPTS` or
/// the profile say otherwise: rides out throttling and 5xx without hiding a
/// dead endpoint for long.
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// How requests to an S3 store are made (`[store]` keys and the global
/// flags); `None` takes the default. A local store ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    /// Limit on opening a connection ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// Limit on one attempt waiting for the first byte of its answer (an
    /// upload's body is sent within it), and on a body read stalling
    /// ([`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Option<Duration>,
    /// Deadline of one store operation, every retry included
    /// ([`DEFAULT_TIMEOUT`]); reached, the operation fails with
    /// [`Error::Unreachable`](crate::Error::Unreachable) naming the endpoint and the operation.
    pub timeout: Option<Duration>,
    /// Attempts per request, the first included; throttling, 5xx answers,
    /// timeouts and broken connections are retried with exponential backoff
    /// ([`DEFAULT_ATTEMPTS`]).
    pub attempts: Option<u32>,
    /// Send requests unsigned and look for no credentials, as `aws s3
    /// --no-sign-request`: reads of a bucket that allows anonymous reads.
    pub no_sign: bool,
}

impl Network {
    /// The request timeout in force.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

/// Settings that take precedence over the standard AWS environment for one
/// S3 store. The CLI leaves them empty; tests and embedders use them to point
/// stores in one process at different servers.
#[derive(Debug, Clone, Default)]
pub struct S3Overrides {
    /// The endpoint URL (like `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// The region (like `AWS_REGION`).
    pub region: Option<String>,
    /// Static credentials (like `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).
    pub credentials: Option<(String, String)>,
    /// Total attempts per request, retries included (like `AWS_MAX_ATTEMPTS`).
    pub max_attempts: Option<u32>,
}
