//! The S3 backend: any S3-compatible service that honours conditional writes
//! (`If-None-Match: *` and `If-Match` on PutObject and
//! CompleteMultipartUpload).
//!
//! Objects above [`MULTIPART_THRESHOLD`] are sent as multipart uploads
//! streamed from a file, a few parts at a time, so memory stays bounded
//! whatever the size; a failed multipart upload is aborted. Streams are
//! spooled to a temporary file first: S3 needs the length up front, and a
//! retry must be able to send the bytes again.
//!
//! Every write (PutObject, CreateMultipartUpload, CopyObject with
//! `MetadataDirective: REPLACE`) sets `Cache-Control` and `Content-Type`
//! from the key ([`layout::http_headers`]), so a CDN in front of the bucket
//! caches what is immutable for a year and revalidates the rest.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, ReadBuf};

use super::layout;
use super::{
    Backend, Body, BodyInner, Condition, DEFAULT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT, Listed, Object, ObjectBody, ObjectMeta, OpenOptions, S3Overrides, Upload,
    Version,
};
use crate::{Error, Result};

/// Objects at least this large are sent as multipart uploads.
const MULTIPART_THRESHOLD: u64 = 64 << 20;
/// The size of one part (raised for objects so large that S3's limit of
/// 10 000 parts would be exceeded).
const PART_SIZE: u64 = 16 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Read size when streaming a file into a request body.
const FILE_BUFFER: usize = 256 << 10;
/// The key the conditional-write probe writes, below the store prefix.
const PROBE_KEY: &str = ".pipe-probe/cas";

pub(super) struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    /// A body read that stalls this long fails.
    stall: Duration,
}

/// What an S3 error means to the store.
enum Class {
    Unreachable,
    /// No credentials were found, so no request was sent.
    NoCredentials,
    Denied,
    /// 412, or 409 ConditionalRequestConflict: a condition did not hold.
    Precondition,
    /// 404 for a missing key (not a missing bucket).
    Missing,
    Other,
}

impl S3Backend {
    pub(super) async fn new(
        bucket: String,
        prefix: String,
        opts: &OpenOptions,
        ov: &S3Overrides,
    ) -> Result<Self> {
        let net = &opts.network;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(net.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .read_timeout(net.request_timeout())
            .operation_timeout(net.timeout.unwrap_or(DEFAULT_TIMEOUT))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        if net.no_sign {
            loader = loader.no_credentials();
        }
        if let Some(url) = &ov.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &ov.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = ov.credentials.as_ref().filter(|_| !net.no_sign) {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "pipe"));
        }
        let sdk = loader.load().await;

        let endpoint = ov
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .filter(|s| !s.is_empty())
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        let path_style = match std::env::var("PIPE_S3_PATH_STYLE").as_deref() {
            Ok("1") | Ok("true") => true,
            Ok("0") | Ok("false") => false,
            _ => endpoint.is_some(),
        };
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            // The default adds aws-chunked bodies with checksum trailers, which
            // many S3-compatible servers reject.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = &endpoint {
            conf = conf.endpoint_url(url);
        }
        if sdk.region().is_none() {
            // S3-compatible servers rarely care, but signing needs a region.
            conf = conf.region(Region::new("us-east-1"));
        }
        if net.no_sign {
            conf = conf.allow_no_auth();
        }
        let attempts = ov.max_attempts.or(net.attempts).or_else(|| {
            let from_env = std::env::var_os("AWS_MAX_ATTEMPTS").is_some();
            (!from_env).then_some(DEFAULT_ATTEMPTS)
        });
        if let Some(n) = attempts {
            let base = sdk
                .retry_config()
                .cloned()
                .unwrap_or_else(RetryConfig::standard);
            conf = conf.retry_config(
                base.with_max_attempts(n)
                    .with_initial_backoff(Duration::from_millis(500))
                    .with_max_backoff(Duration::from_secs(10)),
            );
        }
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        tracing::debug!(%endpoint, %bucket, %prefix, path_style, "S3 store");
        Ok(S3Backend {
            client: Client::from_conf(conf.build()),
            bucket,
            prefix,
            endpoint,
            stall: net.request_timeout(),
        })
    }

    /// The bytes the parts of an unfinished multipart upload hold, and when
    /// its last part arrived (Unix seconds; 0 with no part). Some servers
    /// report an upload's `Initiated` wrongly (moto: a fixed date), the
    /// parts' `LastModified` are what the server stored.
    async fn parts(&self, key: &str, id: &str) -> Result<(u64, u64)> {
        let (mut size, mut last) = (0u64, 0u64);
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .upload_id(id)
                .set_part_number_marker(marker.take())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                // Finished or aborted since it was listed.
                Err(e) if matches!(Self::classify(&e), Class::Missing) => return Ok((size, last)),
                // An answer the SDK cannot read (moto 5 names its root
                // `ListPartsResponse`): the upload's `Initiated` is all
                // there is to go by.
                Err(SdkError::ServiceError(e)) if e.raw().status().is_success() => {
                    tracing::debug!(
                        key,
                        id,
                        "cannot read the parts of an upload; going by its start"
                    );
                    return Ok((size, last));
                }
                Err(e) => return Err(self.error("ListParts", key, e)),
            };
            for part in page.parts() {
                size += part.size().unwrap_or(0).max(0) as u64;
                last = last.max(crate::records::history::unix_secs(system_time(
                    part.last_modified(),
                )));
            }
            if page.is_truncated() != Some(true) {
                return Ok((size, last));
            }
            marker = page.next_part_number_marker().map(str::to_string);
            if marker.is_none() {
                return Ok((size, last));
            }
        }
    }

    /// How many leading characters of a listed key are the store's prefix.
    fn strip(&self) -> usize {
        if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
        err: &SdkError<E, HttpResponse>,
    ) -> Class {
        match err {
            SdkError::TimeoutError(_) => Class::Unreachable,
            SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => Class::Unreachable,
            // Missing credentials surface as a construction or dispatch
            // failure, with no type to tell them by that this crate can name.
            SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_)
                if describe_chain(err).contains("credential") =>
            {
                Class::NoCredentials
            }
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                match (status, s.err().code()) {
                    (_, Some("NoSuchBucket")) => Class::Other,
                    (403, _)
                    | (_, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => {
                        Class::Denied
                    }
                    (412, _) | (409, Some("ConditionalRequestConflict")) => Class::Precondition,
                    (404, _) | (_, Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) => {
                        Class::Missing
                    }
                    _ => Class::Other,
                }
            }
            _ => Class::Other,
        }
    }

    /// The store error for an S3 error that has no special meaning to the
    /// caller.
    /// What a request about one key returned: `None` when the key does
    /// not exist, the store error (as [`Self::error`]) for any other failure.
    fn found<T, E>(
        &self,
        operation: &'static str,
        key: &str,
        out: std::result::Result<T, SdkError<E, HttpResponse>>,
    ) -> Result<Option<T>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match out {
            Ok(out) => Ok(Some(out)),
            Err(e) if matches!(Self::classify(&e), Class::Missing) => Ok(None),
            Err(e) => Err(self.error(operation, key, e)),
        }
    }

    fn error<E>(&self, operation: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let class = Self::classify(&err);
        let detail = describe(&err);
        match class {
            Class::Unreachable => Error::Unreachable {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                operation,
                key: key.to_string(),
                detail,
            },
            Class::NoCredentials => Error::NoCredentials {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                detail,
            },
            Class::Denied => Error::AccessDenied {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                detail,
            },
            _ => Error::S3 {
                operation,
                key: key.to_string(),
                endpoint: self.endpoint.clone(),
                detail,
            },
        }
    }

    /// The error for a write whose condition did not hold.
    fn condition_failed(key: &str, cond: &Condition) -> Error {
        match cond {
            Condition::IfMatch(v) => Error::Conflict {
                key: key.to_string(),
                expected: Some(v.0.clone()),
                found: None,
            },
            _ => Error::AlreadyExists {
                key: key.to_string(),
            },
        }
    }

    async fn put_file(&self, key: &str, path: &Path, cond: &Condition) -> Result<Version> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(path, e))?
            .len();
        if size >= MULTIPART_THRESHOLD {
            return self.put_multipart(key, path, size, cond).await;
        }
        let body = file_stream(path, 0, size).await?;
        self.put_object(key, body, size, cond).await
    }

    /// The object at `key` (at most `max` bytes) if it was last modified at
    /// or after `since`, less the second S3's `Last-Modified` rounds to.
    async fn get_created_since(
        &self,
        key: &str,
        max: u64,
        since: std::time::SystemTime,
    ) -> Result<Option<(bytes::Bytes, Version)>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        let Some(out) = self.found("GetObject", key, out)? else {
            return Ok(None);
        };
        let modified = out
            .last_modified()
            .and_then(|t| u64::try_from(t.secs()).ok())
            .unwrap_or(0);
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if modified + 1 < since {
            return Ok(None);
        }
        let version = version(out.e_tag());
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(
            &mut tokio::io::AsyncReadExt::take(out.body.into_async_read(), max.saturating_add(1)),
            &mut buf,
        )
        .await
        .map_err(|e| self.read_error(key, e))?;
        Ok((buf.len() as u64 <= max).then(|| (buf.into(), version)))
    }

    async fn put_object(
        &self,
        key: &str,
        body: ByteStream,
        size: u64,
        cond: &Condition,
    ) -> Result<Version> {
        let headers = layout::http_headers(key);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .cache_control(headers.cache_control)
            .content_type(headers.content_type)
            .content_length(size as i64)
            .body(body);
        req = match cond {
            Condition::Overwrite => req,
            Condition::IfAbsent => req.if_none_match("*"),
            Condition::IfMatch(v) => req.if_match(&v.0),
        };
        match req.send().await {
            Ok(out) => Ok(version(out.e_tag())),
            Err(e) => match (Self::classify(&e), cond) {
                (Class::Precondition, _) | (Class::Missing, Condition::IfMatch(_)) => {
                    Err(Self::condition_failed(key, cond))
                }
                _ => Err(self.error("PutObject", key, e)),
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        cond: &Condition,
    ) -> Result<Version> {
        let full = self.full_key(key);
        let headers = layout::http_headers(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .cache_control(headers.cache_control)
            .content_type(headers.content_type)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(Error::S3 {
                operation: "CreateMultipartUpload",
                key: key.to_string(),
                endpoint: self.endpoint.clone(),
                detail: "the response has no upload id".into(),
            });
        };
        let result = self
            .upload_parts_and_complete(key, &full, &upload_id, path, size, cond)
            .await;
        if result.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(
                    key,
                    upload_id,
                    error = %describe(&e),
                    "could not abort a failed multipart upload; a bucket lifecycle rule for incomplete uploads will remove it"
                );
            }
        }
        result
    }

    async fn upload_parts_and_complete(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
        cond: &Condition,
    ) -> Result<Version> {
        let part_size = PART_SIZE.max(size.div_ceil(10_000));
        let count = size.div_ceil(part_size);
        let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
            .map(|i| async move {
                let offset = i * part_size;
                let len = part_size.min(size - offset);
                let number = (i + 1) as i32;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len as i64)
                    .body(file_stream(path, offset, len).await?)
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPart", key, e))?;
                Ok::<_, Error>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                )
            })
            .buffer_unordered(PARTS_IN_FLIGHT)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        req = match cond {
            Condition::Overwrite => req,
            Condition::IfAbsent => req.if_none_match("*"),
            Condition::IfMatch(v) => req.if_match(&v.0),
        };
        match req.send().await {
            Ok(out) => Ok(version(out.e_tag())),
            Err(e) => match (Self::classify(&e), cond) {
                (Class::Precondition, _) | (Class::Missing, Condition::IfMatch(_)) => {
                    Err(Self::condition_failed(key, cond))
                }
                _ => Err(self.error("CompleteMultipartUpload", key, e)),
            },
        }
    }

    /// One create-only or conditional put of the probe key; `Ok(true)` if the
    /// server accepted it.
    async fn probe_put(&self, cond: Condition) -> Result<bool> {
        const BODY: &[u8] = b"pipe conditional-write probe\n";
        let body = ByteStream::from_static(BODY);
        match self
            .put_object(PROBE_KEY, body, BODY.len() as u64, &cond)
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists { .. } | Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Backend for S3Backend {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        Ok(self.found("GetObject", key, out)?.map(|out| Object {
            meta: object_meta(key, out.content_length(), out.e_tag()),
            body: Box::new(StallLimit::new(out.body.into_async_read(), self.stall)) as ObjectBody,
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        // The same HeadObject request; the time is dropped.
        Ok(self.stat(key).await?.map(|l| l.meta))
    }

    async fn put(&self, key: &str, body: Body, cond: Condition, _durable: bool) -> Result<Version> {
        match body.0 {
            BodyInner::Bytes(b) => {
                let size = b.len() as u64;
                let started = std::time::SystemTime::now();
                match self
                    .put_object(key, ByteStream::from(b.clone()), size, &cond)
                    .await
                {
                    // The SDK retries a write whose response was lost; if the
                    // first attempt landed, the retry's condition fails on
                    // our own write. An object holding exactly our bytes
                    // means that: compare-and-swap bodies (signed pointer
                    // entries) are never written twice by two writers.
                    Err(Error::Conflict { .. }) if matches!(cond, Condition::IfMatch(_)) => {
                        // Read at most our own size: a larger object is not
                        // ours (another writer won), which is a conflict.
                        match self.get_bytes(key, size).await {
                            Err(Error::TooLarge { .. }) => Err(Self::condition_failed(key, &cond)),
                            Err(e) => Err(e),
                            Ok(Some((found, version))) if found == b => {
                                tracing::debug!(%key, "a retried compare-and-swap found its own write");
                                Ok(version)
                            }
                            Ok(_) => Err(Self::condition_failed(key, &cond)),
                        }
                    }
                    // The same for a create-only write: the object holds
                    // our bytes and appeared after we sent them (an object
                    // that was there before is reported as such).
                    Err(Error::AlreadyExists { .. }) if matches!(cond, Condition::IfAbsent) => {
                        match self.get_created_since(key, size, started).await? {
                            Some((found, version)) if found == b => {
                                tracing::debug!(%key, "a retried create-only write found its own write");
                                Ok(version)
                            }
                            _ => Err(Self::condition_failed(key, &cond)),
                        }
                    }
                    other => other,
                }
            }
            BodyInner::File(path) => self.put_file(key, &path, &cond).await,
            BodyInner::Temp(tmp, _) => self.put_file(key, &tmp, &cond).await,
            BodyInner::Reader(r) => {
                let (tmp, _) = super::digest::spool_hashed(r, &self.spool_dir()).await?;
                self.put_file(key, &tmp, &cond).await
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .list_modified(prefix)
            .await?
            .into_iter()
            .map(|l| l.meta)
            .collect())
    }

    async fn list_modified(&self, prefix: &str) -> Result<Vec<Listed>> {
        let strip = self.strip();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| k.get(strip..)) else {
                    continue;
                };
                if key.starts_with(".pipe-probe/") {
                    continue;
                }
                out.push(Listed {
                    meta: object_meta(key, obj.size(), obj.e_tag()),
                    modified: system_time(obj.last_modified()),
                });
            }
        }
        Ok(out)
    }

    async fn stat(&self, key: &str) -> Result<Option<Listed>> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        Ok(self.found("HeadObject", key, out)?.map(|out| Listed {
            meta: object_meta(key, out.content_length(), out.e_tag()),
            modified: system_time(out.last_modified()),
        }))
    }

    async fn freshen(&self, key: &str) -> Result<()> {
        // A copy onto itself is allowed only when something changes: the
        // metadata is replaced (with the same headers), which gives the
        // object a new `Last-Modified` without sending its bytes.
        let headers = layout::http_headers(key);
        let full = self.full_key(key);
        let out = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(copy_source(&self.bucket, &full))
            .key(&full)
            .metadata_directive(MetadataDirective::Replace)
            .cache_control(headers.cache_control)
            .content_type(headers.content_type)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if matches!(Self::classify(&e), Class::Missing) => Ok(()),
            Err(e) => Err(self.error("CopyObject", key, e)),
        }
    }

    async fn uploads(&self) -> Result<Vec<Upload>> {
        let strip = self.strip();
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(self.full_key(""))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.error("ListMultipartUploads", "", e))?;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key().and_then(|k| k.get(strip..)), u.upload_id())
                else {
                    continue;
                };
                let (size, last_part) = self.parts(key, id).await?;
                let started = crate::records::history::unix_secs(system_time(u.initiated()));
                out.push(Upload {
                    key: key.to_string(),
                    id: id.to_string(),
                    last_active: started.max(last_part),
                    size,
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn abort_upload(&self, upload: &Upload) -> Result<()> {
        let out = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(&upload.key))
            .upload_id(&upload.id)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // NoSuchUpload: finished or aborted meanwhile.
            Err(e) if matches!(Self::classify(&e), Class::Missing) => Ok(()),
            Err(e) => Err(self.error("AbortMultipartUpload", &upload.key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }

    async fn copy_if_absent(&self, from: &str, to: &str, _durable: bool) -> Result<bool> {
        // No HEAD first: a round trip per package costs more than the rare
        // copy over an existing target, which holds the same bytes (the
        // source is immutable and `to` is only ever a copy of it).
        // A copy takes its headers from `to` (a blob copied into the pool
        // becomes a .deb): REPLACE, or S3 keeps the source's.
        let headers = layout::http_headers(to);
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(copy_source(&self.bucket, &self.full_key(from)))
            .key(self.full_key(to))
            .metadata_directive(MetadataDirective::Replace)
            .cache_control(headers.cache_control)
            .content_type(headers.content_type)
            .send()
            .await
            .map_err(|e| self.error("CopyObject", to, e))?;
        Ok(true)
    }

    async fn copy(&self, from: &str, to: &str, durable: bool) -> Result<()> {
        // A CopyObject replaces its target: the same request.
        self.copy_if_absent(from, to, durable).await.map(|_| ())
    }

    fn spool_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }

    async fn prepare_write(&self, opts: &OpenOptions) -> Result<()> {
        // Created on first use; on later runs the first create-only put is
        // refused, which is as good.
        self.probe_put(Condition::IfAbsent).await?;
        let mut failures = Vec::new();
        if self.probe_put(Condition::IfAbsent).await? {
            failures
                .push("a create-only PutObject (`If-None-Match: *`) replaced an existing object");
        }
        let wrong = Version("\"00000000000000000000000000000000\"".into());
        if self.probe_put(Condition::IfMatch(wrong)).await? {
            failures.push("a PutObject with `If-Match` of a wrong ETag was accepted");
        }
        if failures.is_empty() {
            tracing::debug!(endpoint = %self.endpoint, bucket = %self.bucket, "conditional writes work");
            return Ok(());
        }
        let detail = failures.join("; ");
        if opts.unsafe_no_cas {
            tracing::warn!(
                endpoint = %self.endpoint,
                bucket = %self.bucket,
                %detail,
                "the S3 server ignores conditional writes; continuing because of --unsafe-no-cas: concurrent promotions may overwrite each other"
            );
            return Ok(());
        }
        Err(Error::CasUnsupported {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            detail,
        })
    }

    fn read_error(&self, key: &str, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::TimedOut {
            return Error::Unreachable {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                operation: "GetObject",
                key: key.to_string(),
                detail: format!("reading the response body: {e}"),
            };
        }
        Error::S3 {
            operation: "GetObject",
            key: key.to_string(),
            endpoint: self.endpoint.clone(),
            detail: format!("reading the response body: {e}"),
        }
    }
}

/// An S3 timestamp as a system time (now when missing: an object whose age
/// is unknown counts as just written, which `pipe gc` never deletes).
fn system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> std::time::SystemTime {
    t.and_then(|t| std::time::SystemTime::try_from(*t).ok())
        .unwrap_or_else(std::time::SystemTime::now)
}

/// ETags are compared as opaque strings, so one form is kept: quoted, as
/// S3 sends them.
/// `x-amz-copy-source` is URL-encoded: a `+` in a package version would
/// otherwise be read as a space.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An object's key, size and version as S3 reports them (an absent or
/// negative size is 0).
fn object_meta(key: &str, size: Option<i64>, e_tag: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        version: version(e_tag),
    }
}

fn version(etag: Option<&str>) -> Version {
    let e = etag.unwrap_or_default();
    if e.starts_with('"') || e.starts_with("W/") {
        Version(e.to_string())
    } else {
        Version(format!("\"{e}\""))
    }
}

fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(s) = err {
        let status = s.raw().status().as_u16();
        let e = s.err();
        return match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
            (Some(code), None) => format!("HTTP {status} {code}"),
            _ => format!("HTTP {status}: {}", DisplayErrorContext(e)),
        };
    }
    describe_chain(err)
}

/// The chain of causes, without the Debug dump `DisplayErrorContext` adds.
fn describe_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

async fn file_stream(path: &Path, offset: u64, len: u64) -> Result<ByteStream> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .buffer_size(FILE_BUFFER)
        .build()
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))
}

/// A body read that fails with `TimedOut` when no byte arrives for `limit`:
/// a server that sent its headers and then stopped cannot hang a reader.
struct StallLimit<R> {
    inner: R,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> StallLimit<R> {
    fn new(inner: R, limit: Duration) -> Self {
        StallLimit {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallLimit<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no byte of the answer for {:?}", this.limit),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
