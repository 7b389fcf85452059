//! The OCI registry client: pushes images blob by blob, moves tags, and
//! attaches artifacts (provenance) to images.
//!
//! Built on `oci-client`, whose own `push` uploads every blob whatever the
//! registry has; here each blob is first checked (`HEAD`), then mounted
//! from another repository of the same registry when the caller knows one
//! that has it, and only then uploaded, in chunks (`PATCH`es of 4 MiB
//! streamed from the source, so memory does not grow with a layer), with
//! progress reported through [`PushProgress`]. The manifest goes last, by
//! tag: a registry checks that every blob a manifest names is present, so
//! a tag never names a half-pushed image, and a push that failed halfway
//! is completed by running it again (blobs already there are skipped).
//!
//! Repositories: `[registry] url = "HOST[:PORT]/NAMESPACE"` puts image
//! `NAME` at `HOST[:PORT]/NAMESPACE/NAME`. `insecure = true` speaks plain
//! HTTP to that host (a registry on loopback). Credentials: `auth`.
//! Errors name the registry, the image and what failed, and say whether
//! the registry was unreachable, refused the credentials or refused the
//! content.

pub(crate) mod auth;
mod push;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use bytes::Bytes;
use futures::SinkExt;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use stages::oci::{BlobRef, ImageBlobs};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Mutex;

pub use self::auth::{CredentialSources, Credentials};
pub(crate) use self::push::move_tags_known;
pub use self::push::{
    ImagePublished, Prepushed, SeedReport, TagMoved, move_tags, publish_build, push_build_blobs,
    seed,
};
use crate::error::RegistryFailure;
use crate::{Error, Result};

/// Largest manifest or index read back from a registry.
pub(crate) const MAX_MANIFEST: usize = 4 << 20;

/// Where blobs come from when they must be uploaded.
#[async_trait::async_trait]
pub trait BlobSource: Send + Sync {
    /// The bytes of `blob`. The registry checks the digest when the upload
    /// is finalised; a source should check too where it can.
    async fn open(&self, blob: &BlobRef) -> Result<Pin<Box<dyn AsyncRead + Send>>>;
}

/// Blobs in a directory, one file per blob named by its hex digest (what
/// `stages::oci::build_image` writes).
pub struct DirSource(pub std::path::PathBuf);

#[async_trait::async_trait]
impl BlobSource for DirSource {
    async fn open(&self, blob: &BlobRef) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
        let p = self.0.join(blob.hex());
        let f = tokio::fs::File::open(&p)
            .await
            .map_err(|e| Error::io(&p, e))?;
        Ok(Box::pin(f))
    }
}

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobOutcome {
    /// The registry had it.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// Progress of a push, for the caller to draw (the library never prints).
pub trait PushProgress: Send + Sync {
    /// An upload of `blob` starts.
    fn upload_started(&self, _blob: &BlobRef) {}
    /// `bytes` more of `blob` went out.
    fn uploaded(&self, _blob: &BlobRef, _bytes: u64) {}
    /// `blob` is in the registry.
    fn blob_done(&self, _blob: &BlobRef, _outcome: BlobOutcome) {}
}

/// Reports nothing.
pub struct NoProgress;
impl PushProgress for NoProgress {}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// `HOST/NAMESPACE/NAME@sha256:…`.
    pub reference: String,
    /// Blobs uploaded, and their bytes.
    pub blobs_uploaded: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Blobs the registry had (or mounted), and their bytes.
    pub blobs_skipped: usize,
    /// Bytes not uploaded because the registry had them.
    pub bytes_skipped: u64,
}

impl PushReport {
    /// Counts a blob of `size` bytes, uploaded or found in the registry.
    pub fn count(&mut self, size: u64, uploaded: bool) {
        if uploaded {
            self.blobs_uploaded += 1;
            self.bytes_uploaded += size;
        } else {
            self.blobs_skipped += 1;
            self.bytes_skipped += size;
        }
    }
}

/// One image to push.
#[derive(Clone, Copy)]
pub struct ImagePush<'a> {
    /// The image name (its repository is `NAMESPACE/NAME`).
    pub name: &'a str,
    /// The tag the manifest goes under.
    pub tag: &'a str,
    /// The manifest and the blobs it names.
    pub blobs: &'a ImageBlobs,
    /// The manifest's bytes (their digest is `blobs.manifest.digest`).
    pub manifest: &'a [u8],
    /// Where blobs to upload come from.
    pub source: &'a dyn BlobSource,
    /// Other images of the same registry to mount blobs from.
    pub mount_from: &'a [String],
}

/// A registry and the namespace pipe's images live under.
///
/// Authentication is resolved once per repository (and kept): anonymous
/// access sends no `Authorization` at all and costs no request; credentials
/// are negotiated once (`GET /v2/`, and a token request when the registry
/// asks for bearer tokens) and then sent with every request. oci-client
/// alone would probe `/v2/` again before every request of an anonymous
/// client, which tripled the requests of a push. Manifest and blob checks
/// (`HEAD`), manifest reads and writes go out as single requests; uploads
/// and mounts go through oci-client.
pub struct Registry {
    /// Built on first use: a tag check or move never needs it.
    client: std::sync::OnceLock<oci_client::Client>,
    insecure: bool,
    http: reqwest::Client,
    scheme: &'static str,
    host: String,
    namespace: String,
    credentials: Credentials,
    auth: Mutex<HashMap<String, Auth>>,
    upload_concurrency: usize,
    monolithic_max: u64,
}

/// What goes with every request to one repository.
#[derive(Clone)]
enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => r,
            Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
            Auth::Bearer(t) => r.bearer_auth(t),
        }
    }
}

/// Blobs up to this size go up in one request (`PUT`, streamed, as skopeo
/// sends them); larger ones in [`CHUNK`] pieces (`PATCH`es). Chunks cost
/// the registry a round trip and a hash-state save each: a 200 MiB layer
/// in 4 MiB chunks took 2.6 times skopeo's time (BENCHMARKS.md).
pub(crate) const MONOLITHIC_MAX: u64 = 1 << 30;

/// The size of one `PATCH` of a chunked upload (oci-client's largest).
pub(crate) const CHUNK: usize = 4 << 20;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const USER_AGENT: &str = concat!("pipe/", env!("CARGO_PKG_VERSION"));

/// What a registry is asked to answer with for a manifest.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("namespace", &self.namespace)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Registry {
    /// A client for `url` (`HOST[:PORT]/NAMESPACE`), with credentials from
    /// `sources`.
    pub fn new(url: &str, insecure: bool, sources: &CredentialSources) -> Result<Registry> {
        let (host, namespace) = url.split_once('/').ok_or_else(|| Error::Usage {
            message: format!("registry URL `{url}` names no repository"),
            hint: Some("write `[registry] url = \"HOST[:PORT]/NAMESPACE\"`".into()),
        })?;
        let namespace = namespace.trim_end_matches('/').to_string();
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT);
        if insecure {
            // Plain HTTP: no TLS roots to load.
            http = http.tls_certs_only(std::iter::empty());
        }
        let http = http.build().map_err(|e| Error::Usage {
            message: format!("cannot set up an HTTP client for `{host}`: {e}"),
            hint: None,
        })?;
        let credentials = sources.find(host, &namespace);
        tracing::debug!(host, namespace, credentials = ?credentials, "registry");
        Ok(Registry {
            client: std::sync::OnceLock::new(),
            insecure,
            http,
            scheme: if insecure { "http" } else { "https" },
            host: host.to_string(),
            namespace,
            credentials,
            auth: Mutex::new(HashMap::new()),
            upload_concurrency: 3,
            monolithic_max: MONOLITHIC_MAX,
        })
    }

    /// Uploads blobs larger than `bytes` in chunks (`MONOLITHIC_MAX`
    /// unless told).
    pub fn with_monolithic_max(mut self, bytes: u64) -> Registry {
        self.monolithic_max = bytes;
        self
    }

    /// oci-client, for uploads, mounts and credential negotiation.
    fn oci(&self) -> &oci_client::Client {
        self.client.get_or_init(|| {
            let protocol = if self.insecure {
                ClientProtocol::HttpsExcept(vec![self.host.clone()])
            } else {
                ClientProtocol::Https
            };
            oci_client::Client::new(ClientConfig {
                protocol,
                connect_timeout: Some(CONNECT_TIMEOUT),
                read_timeout: Some(READ_TIMEOUT),
                user_agent: USER_AGENT,
                // `push_blob_stream` is one streamed `PUT`; large blobs use
                // `push_blob_stream_chunked`, which always sends `PATCH`es.
                use_monolithic_push: true,
                ..Default::default()
            })
        })
    }

    /// `HOST[:PORT]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository of image `name`: `NAMESPACE/NAME`.
    pub(crate) fn repository(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    /// `HOST/NAMESPACE/NAME@DIGEST`: how consumers name the image.
    pub(crate) fn pinned(&self, name: &str, digest: &str) -> String {
        format!("{}/{}@{digest}", self.host, self.repository(name))
    }

    /// `HOST/NAMESPACE/NAME:TAG`.
    pub(crate) fn tagged(&self, name: &str, tag: &str) -> String {
        format!("{}/{}:{tag}", self.host, self.repository(name))
    }

    fn reference(&self, name: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), self.repository(name), tag.to_string())
    }

    /// `SCHEME://HOST/v2/NAMESPACE/NAME/{manifests,blobs}/REFERENCE`.
    fn url(&self, name: &str, what: &str, reference: &str) -> String {
        format!(
            "{}://{}/v2/{}/{what}/{reference}",
            self.scheme,
            self.host,
            self.repository(name)
        )
    }

    fn error(&self, name: &str, action: &'static str, e: OciDistributionError) -> Error {
        let (kind, reason) = classify(&e);
        self.failure(name, action, kind, reason)
    }

    fn failure(
        &self,
        name: &str,
        action: &'static str,
        kind: RegistryFailure,
        reason: String,
    ) -> Error {
        let reason = match kind {
            RegistryFailure::Unauthorized => {
                format!("{reason} (sent {})", self.credentials.describe())
            }
            _ => reason,
        };
        Error::Registry {
            registry: self.host.clone(),
            image: self.repository(name),
            action,
            kind,
            reason,
        }
    }

    /// What a refused request's status and body say.
    async fn refused(&self, name: &str, action: &'static str, res: reqwest::Response) -> Error {
        let status = res.status();
        let kind = match status.as_u16() {
            401 | 403 => RegistryFailure::Unauthorized,
            _ => RegistryFailure::Refused,
        };
        let body = res.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(body.get(..1024).unwrap_or(&body));
        self.failure(
            name,
            action,
            kind,
            format!("HTTP {status}: {}", text.trim()),
        )
    }

    /// Authenticates for `name` once (a push login serves reads too), so a
    /// refusal is reported before anything is sent, and returns what goes
    /// with each request.
    async fn login(&self, name: &str, push: bool) -> Result<Auth> {
        let repository = self.repository(name);
        let mut done = self.auth.lock().await;
        if let Some(a) = done.get(&repository) {
            return Ok(a.clone());
        }
        let auth = match &self.credentials {
            Credentials::Anonymous => Auth::None,
            Credentials::Basic {
                username, password, ..
            } => {
                // Always the push scope: one negotiation for both.
                let _ = push;
                let token = self
                    .oci()
                    .auth(
                        &self.reference(name, "latest"),
                        &RegistryAuth::Basic(username.clone(), password.clone()),
                        RegistryOperation::Push,
                    )
                    .await
                    .map_err(|e| self.error(name, "authenticating for", e))?;
                match token {
                    Some(t) => Auth::Bearer(t),
                    None => Auth::Basic(username.clone(), password.clone()),
                }
            }
        };
        done.insert(repository, auth.clone());
        Ok(auth)
    }

    /// One request to the repository of `name`, with its authentication.
    async fn send(
        &self,
        name: &str,
        push: bool,
        action: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let auth = self.login(name, push).await?;
        let again = request.try_clone();
        let send = |auth: &Auth, request: reqwest::RequestBuilder| {
            let sent = auth.apply(request).send();
            async move {
                sent.await
                    .map_err(|e| self.error(name, action, OciDistributionError::RequestError(e)))
            }
        };
        let res = send(&auth, request).await?;
        // A bearer token can expire during a long push: negotiate once more.
        if let (401, Auth::Bearer(_), Some(again)) = (res.status().as_u16(), &auth, again) {
            self.auth.lock().await.remove(&self.repository(name));
            let auth = self.login(name, push).await?;
            return send(&auth, again).await;
        }
        Ok(res)
    }

    /// Whether the repository of `name` has `digest` (one `HEAD`).
    pub(crate) async fn has_blob(&self, name: &str, digest: &str) -> Result<bool> {
        let action = "checking a blob of";
        let res = self
            .send(
                name,
                true,
                action,
                self.http.head(self.url(name, "blobs", digest)),
            )
            .await?;
        match res.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refused(name, action, res).await),
        }
    }

    /// Pushes one blob unless the registry has it: checked, then mounted
    /// from one of `mount_from` (repositories of the same registry, by image
    /// name), then uploaded from `source`: in one streamed request up to
    /// [`MONOLITHIC_MAX`], in [`CHUNK`]s above. The registry checks the
    /// digest either way.
    pub(crate) async fn push_blob(
        &self,
        name: &str,
        blob: &BlobRef,
        source: &dyn BlobSource,
        mount_from: &[String],
        progress: &dyn PushProgress,
    ) -> Result<BlobOutcome> {
        let reference = self.reference(name, "latest");
        if self.has_blob(name, &blob.digest).await? {
            progress.blob_done(blob, BlobOutcome::Present);
            return Ok(BlobOutcome::Present);
        }
        for other in mount_from.iter().filter(|o| o.as_str() != name) {
            let from = self.reference(other, "latest");
            match self.oci().mount_blob(&reference, &from, &blob.digest).await {
                Ok(()) => {
                    progress.blob_done(blob, BlobOutcome::Mounted);
                    return Ok(BlobOutcome::Mounted);
                }
                Err(e) => tracing::debug!(from = other, error = %e, "mount refused; uploading"),
            }
        }
        progress.upload_started(blob);
        let mut reader = source.open(blob).await?;
        // oci-client wants a 'static stream: feed it through a channel from
        // here, so the source (and the progress reporter) may borrow. Each
        // item is one chunk; progress is reported per read (at most 1 MiB).
        let (tx, rx) = futures::channel::mpsc::channel::<oci_client::errors::Result<Bytes>>(2);
        let feed = async move {
            let mut tx = tx;
            loop {
                let mut buf = bytes::BytesMut::with_capacity(CHUNK);
                let mut failed = None;
                while buf.len() < CHUNK {
                    let want = (CHUNK - buf.len()).min(1 << 20) as u64;
                    match (&mut reader).take(want).read_buf(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => progress.uploaded(blob, n as u64),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                let last = failed.is_some() || buf.len() < CHUNK;
                if !buf.is_empty() && tx.send(Ok(buf.freeze())).await.is_err() {
                    break;
                }
                if let Some(e) = failed {
                    let _ = tx.send(Err(OciDistributionError::IoError(e))).await;
                }
                if last {
                    break;
                }
            }
        };
        let action = "uploading a blob of";
        if blob.size <= self.monolithic_max {
            let push = self
                .oci()
                .push_blob_stream(&reference, rx, &blob.digest, Some(blob.size));
            let (pushed, ()) = futures::join!(push, feed);
            pushed.map_err(|e| self.error(name, action, e))?;
        } else {
            let push = self.oci().push_blob_stream_chunked(&reference, rx);
            let (pushed, ()) = futures::join!(push, feed);
            let pushed = pushed.map_err(|e| self.error(name, action, e))?;
            // The digest was computed from the bytes sent: they must be the
            // blob's (the registry has them under their own digest only).
            if pushed.blob_digest != blob.digest || pushed.size != blob.size {
                return Err(self.failure(
                    name,
                    action,
                    RegistryFailure::Refused,
                    format!(
                        "the bytes read for {} ({} bytes) are {} ({} bytes): not the blob the manifest names",
                        blob.digest, blob.size, pushed.blob_digest, pushed.size
                    ),
                ));
            }
        }
        progress.blob_done(blob, BlobOutcome::Uploaded);
        Ok(BlobOutcome::Uploaded)
    }

    /// Pushes an image: every layer and the configuration unless present
    /// (several at once), then the manifest under the tag.
    pub async fn push_image(
        &self,
        req: &ImagePush<'_>,
        progress: &dyn PushProgress,
    ) -> Result<PushReport> {
        let ImagePush {
            name,
            tag,
            blobs,
            manifest,
            source,
            mount_from,
        } = *req;
        let mut report = PushReport {
            reference: self.pinned(name, &blobs.manifest.digest),
            ..Default::default()
        };
        for (b, o) in self
            .push_blobs(name, blobs, source, mount_from, progress)
            .await?
        {
            report.count(b.size, o == BlobOutcome::Uploaded);
        }
        self.put_manifest(name, tag, manifest, stages::oci::MEDIA_MANIFEST)
            .await?;
        Ok(report)
    }

    /// Pushes the layers and the configuration of an image unless present
    /// (several at once), and nothing else: no manifest, no tag.
    pub(crate) async fn push_blobs<'b>(
        &self,
        name: &str,
        blobs: &'b ImageBlobs,
        source: &dyn BlobSource,
        mount_from: &[String],
        progress: &dyn PushProgress,
    ) -> Result<Vec<(&'b BlobRef, BlobOutcome)>> {
        self.login(name, true).await?;
        let mut seen = HashSet::new();
        let unique: Vec<&BlobRef> = blobs
            .layers
            .iter()
            .chain([&blobs.config])
            .filter(|b| seen.insert(b.digest.clone()))
            .collect();
        futures::stream::iter(unique)
            .map(|b| async move {
                self.push_blob(name, b, source, mount_from, progress)
                    .await
                    .map(|o| (b, o))
            })
            .buffer_unordered(self.upload_concurrency)
            .try_collect()
            .await
    }

    /// A `HEAD` or `GET` of the manifest `tag` names: `None` when there is
    /// none, an error unless the registry answers `200`.
    async fn manifest_request(
        &self,
        name: &str,
        tag: &str,
        method: reqwest::Method,
        action: &'static str,
    ) -> Result<Option<reqwest::Response>> {
        let request = self
            .http
            .request(method, self.url(name, "manifests", tag))
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT);
        let res = self.send(name, false, action, request).await?;
        match res.status().as_u16() {
            200 => Ok(Some(res)),
            404 => Ok(None),
            _ => Err(self.refused(name, action, res).await),
        }
    }

    /// The digest `tag` names now, if any (one `HEAD`).
    pub async fn tagged_digest(&self, name: &str, tag: &str) -> Result<Option<String>> {
        let action = "reading a tag of";
        let Some(res) = self
            .manifest_request(name, tag, reqwest::Method::HEAD, action)
            .await?
        else {
            return Ok(None);
        };
        let header = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string);
        match header {
            Some(d) => Ok(Some(d)),
            // A registry that does not say: read the manifest and hash it.
            None => Ok(self
                .get_manifest(name, tag)
                .await?
                .map(|bytes| stages::oci::sha256_of(&bytes))),
        }
    }

    /// Puts `manifest` under `tag` (or, when `tag` is a digest, by digest):
    /// a manifest-only push (one `PUT`). The registry refuses it unless
    /// every blob it names is there.
    pub async fn put_manifest(
        &self,
        name: &str,
        tag: &str,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let action = "pushing the manifest of";
        let res = self
            .send(
                name,
                true,
                action,
                self.http
                    .put(self.url(name, "manifests", tag))
                    .header(reqwest::header::CONTENT_TYPE, media_type)
                    .body(manifest.to_vec()),
            )
            .await?;
        match res.status().as_u16() {
            200..=202 => Ok(()),
            _ => Err(self.refused(name, action, res).await),
        }
    }

    /// Reads the manifest (or index) `tag` names, capped at
    /// [`MAX_MANIFEST`]; `None` when the tag does not exist.
    pub(crate) async fn get_manifest(&self, name: &str, tag: &str) -> Result<Option<Vec<u8>>> {
        let action = "reading a manifest of";
        let Some(mut res) = self
            .manifest_request(name, tag, reqwest::Method::GET, action)
            .await?
        else {
            return Ok(None);
        };
        let too_large = |n: u64| {
            self.failure(
                name,
                action,
                RegistryFailure::Refused,
                format!("`{tag}` is {n} bytes, more than {MAX_MANIFEST}"),
            )
        };
        if let Some(n) = res.content_length()
            && n > MAX_MANIFEST as u64
        {
            return Err(too_large(n));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| self.error(name, action, OciDistributionError::RequestError(e)))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_MANIFEST {
                return Err(too_large(bytes.len() as u64));
            }
        }
        Ok(Some(bytes))
    }

    /// Attaches `payload` (of `payload_type`) to the image `subject` as an
    /// OCI artifact of `artifact_type` whose `subject` is the image
    /// manifest, and lists it in the referrers index under the tag
    /// `sha256-<hex>` (the referrers tag schema, for registries without the
    /// referrers API). Returns the artifact manifest's digest. Idempotent.
    pub async fn attach(
        &self,
        name: &str,
        subject: &BlobRef,
        artifact_type: &str,
        payloads: &[(&[u8], &str)],
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<String> {
        let empty = BlobRef {
            media_type: "application/vnd.oci.empty.v1+json".into(),
            digest: stages::oci::sha256_of(b"{}"),
            size: 2,
        };
        let mut source = vec![(empty.digest.clone(), Bytes::from_static(b"{}"))];
        let mut layers = Vec::new();
        for (payload, media_type) in payloads {
            let layer = BlobRef {
                media_type: media_type.to_string(),
                digest: stages::oci::sha256_of(payload),
                size: payload.len() as u64,
            };
            source.push((layer.digest.clone(), Bytes::copy_from_slice(payload)));
            layers.push(layer);
        }
        let source = MemSource(source);
        for b in std::iter::once(&empty).chain(&layers) {
            self.push_blob(name, b, &source, &[], &NoProgress).await?;
        }
        let manifest =
            stages::oci::artifact_manifest(artifact_type, &empty, &layers, subject, annotations);
        let digest = stages::oci::sha256_of(&manifest);
        self.put_manifest(name, &digest, &manifest, stages::oci::MEDIA_MANIFEST)
            .await?;
        // The referrers index under the fallback tag: read, add, write.
        let tag = subject.digest.replace(':', "-");
        let existing = self.get_manifest(name, &tag).await?;
        let entry = stages::oci::Referrer {
            digest: digest.clone(),
            size: manifest.len() as u64,
            artifact_type: artifact_type.to_string(),
            annotations: annotations.clone(),
        };
        let index =
            stages::oci::referrers_index(existing.as_deref(), &entry).map_err(|reason| {
                Error::Registry {
                    registry: self.host.clone(),
                    image: self.repository(name),
                    action: "reading the referrers of",
                    kind: RegistryFailure::Refused,
                    reason,
                }
            })?;
        if let Some(index) = index {
            self.put_manifest(name, &tag, &index, stages::oci::MEDIA_INDEX)
                .await?;
        }
        Ok(digest)
    }
}

/// Blobs held in memory (small artifacts).
struct MemSource(Vec<(String, Bytes)>);

#[async_trait::async_trait]
impl BlobSource for MemSource {
    async fn open(&self, blob: &BlobRef) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
        let b = self
            .0
            .iter()
            .find(|(d, _)| *d == blob.digest)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        Ok(Box::pin(std::io::Cursor::new(b)))
    }
}

/// Sorts an oci-client error into what the user can act on.
fn classify(e: &OciDistributionError) -> (RegistryFailure, String) {
    use OciDistributionError as E;
    let kind = match e {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => RegistryFailure::Unauthorized,
        E::RequestError(r) if r.is_connect() || r.is_timeout() => RegistryFailure::Unreachable,
        E::RequestError(r) if matches!(r.status().map(|s| s.as_u16()), Some(401 | 403)) => {
            RegistryFailure::Unauthorized
        }
        E::RequestError(_) | E::IoError(_) => RegistryFailure::Unreachable,
        E::ServerError {
            code: 401 | 403, ..
        } => RegistryFailure::Unauthorized,
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::Unauthorized
                        | oci_client::errors::OciErrorCode::Denied
                )
            }) =>
        {
            RegistryFailure::Unauthorized
        }
        _ => RegistryFailure::Refused,
    };
    // reqwest's Display hides the cause ("error sending request"): add it.
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let s_text = s.to_string();
        if !reason.contains(&s_text) {
            reason.push_str(": ");
            reason.push_str(&s_text);
        }
        src = s.source();
    }
    (kind, reason)
}
