//! S3 Object Lock: the bucket's lock configuration read at start, the retention kvault puts on
//! every object of an archive it commits, and the retention it reads back before a delete.
//!
//! `object_store` has no call for any of these, so the few requests are made here: signed with
//! the client's own credentials (SigV4 through `object_store::aws::AwsAuthorizer`) and sent
//! through `object_store`'s HTTP client, with the same timeouts. S3 wants a `Content-MD5` on
//! every request that sets a retention; `object_store`'s own PUTs cannot carry one, which is
//! why a locked manifest is written here too (create-only, its lock set in the same request,
//! so it is never visible unlocked).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, ReqwestConnector};
use object_store::path::Path as Key;
use object_store::ClientOptions;

use super::config::ObjectLock;
use super::layout::MANIFEST_FILE;
use super::removal::referenced;
use super::{io, Bucket};
use crate::error::{Result, StorageError};

/// What a create-only or compare-and-swap write of a locked object asks of the existing one.
pub(super) enum Precondition {
    /// `If-None-Match: *`: no object there.
    Absent,
    /// `If-Match`: the object still has this ETag.
    Matches(String),
}

/// Signs and sends Object Lock requests to one bucket.
pub(crate) struct Locker {
    http: HttpClient,
    credentials: AwsCredentialProvider,
    region: String,
    /// `https://{bucket}.s3.{region}.amazonaws.com`, or `{endpoint}/{bucket}` (path style).
    bucket_url: String,
    policy: ObjectLock,
}

/// An Object Lock request that failed: the server's status and error code, or why it was
/// never answered.
#[derive(Debug, thiserror::Error)]
#[error("S3 Object Lock {what}: {detail}")]
pub(super) struct LockRequestError {
    what: &'static str,
    detail: String,
}

impl LockRequestError {
    fn new(what: &'static str, detail: impl Into<String>) -> Self {
        Self {
            what,
            detail: detail.into(),
        }
    }

    /// As `object_store`'s error, so it is classified (access denied, unreachable) like any
    /// other storage call.
    pub(super) fn into_object(self) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(self),
        }
    }
}

type Answer = (StatusCode, HeaderMap, Bytes);

impl Locker {
    pub(super) fn new(
        client: &AmazonS3,
        options: &ClientOptions,
        bucket_url: String,
        region: String,
        policy: ObjectLock,
    ) -> Result<Self, object_store::Error> {
        Ok(Self {
            http: ReqwestConnector::default().connect(options)?,
            credentials: client.credentials().clone(),
            region,
            bucket_url,
            policy,
        })
    }

    /// The instant an archive committed at `now` is locked until (whole seconds, as S3
    /// keeps it).
    pub(super) fn until_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let until = now + chrono::Duration::from_std(self.policy.retain).unwrap_or_default();
        DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until)
    }

    /// Ok when the bucket has Object Lock enabled; otherwise why kvault cannot lock there.
    pub(super) async fn check_bucket(&self) -> Result<(), LockRequestError> {
        let url = format!("{}?object-lock", self.bucket_url);
        let (status, _, body) = self
            .send(Method::GET, &url, HeaderMap::new(), Bytes::new())
            .await?;
        let text = String::from_utf8_lossy(&body);
        if status.is_success() && text.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>") {
            return Ok(());
        }
        if status.is_success() || text.contains("ObjectLockConfigurationNotFound") {
            return Err(LockRequestError::new(
                "configuration",
                "the bucket does not have Object Lock enabled (it can only be enabled when \
                 the bucket is created, or on AWS later with versioning on); create it with \
                 Object Lock, or remove storage.s3.object_lock",
            ));
        }
        Err(refused("configuration", status, &text))
    }

    /// Locks the current version of `key` until `until`.
    pub(super) async fn set_retention(
        &self,
        key: &Key,
        until: DateTime<Utc>,
    ) -> Result<(), LockRequestError> {
        let body = Bytes::from(format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            self.policy.mode.as_s3(),
            s3_date(until)
        ));
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/xml"));
        let url = format!("{}?retention", self.object_url(key));
        let (status, _, answer) = self.send(Method::PUT, &url, headers, body).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(refused(
            "retention",
            status,
            &String::from_utf8_lossy(&answer),
        ))
    }

    /// Writes `body` to `key`, locked until `until` in the same request, if `precondition`
    /// holds; `Ok(false)` when it does not.
    pub(super) async fn put_locked(
        &self,
        key: &Key,
        body: Bytes,
        precondition: &Precondition,
        until: DateTime<Utc>,
    ) -> Result<bool, LockRequestError> {
        let mut headers = HeaderMap::new();
        let (name, value) = match precondition {
            Precondition::Absent => ("if-none-match", "*"),
            Precondition::Matches(etag) => ("if-match", etag.as_str()),
        };
        headers.insert(name, header(value)?);
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "x-amz-object-lock-mode",
            HeaderValue::from_static(self.policy.mode.as_s3()),
        );
        headers.insert(
            "x-amz-object-lock-retain-until-date",
            header(&s3_date(until))?,
        );
        let url = self.object_url(key);
        let (status, _, answer) = self.send(Method::PUT, &url, headers, body).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => Ok(false),
            s => Err(refused("write", s, &String::from_utf8_lossy(&answer))),
        }
    }

    /// Until when the current version of `key` is locked; `None` when it is not (or there is
    /// no such object).
    pub(super) async fn retention(
        &self,
        key: &Key,
    ) -> Result<Option<DateTime<Utc>>, LockRequestError> {
        let url = self.object_url(key);
        let (status, headers, _) = self
            .send(Method::HEAD, &url, HeaderMap::new(), Bytes::new())
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refused("read", status, ""));
        }
        Ok(headers
            .get("x-amz-object-lock-retain-until-date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|d| d.with_timezone(&Utc)))
    }

    fn object_url(&self, key: &Key) -> String {
        let encoded: Vec<String> = key.as_ref().split('/').map(encode_segment).collect();
        format!("{}/{}", self.bucket_url, encoded.join("/"))
    }

    /// Signs and sends one request; any answer the server gives is `Ok`.
    async fn send(
        &self,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, LockRequestError> {
        let what = "request";
        if !body.is_empty() {
            let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
            headers.insert("content-md5", header(&md5)?);
        }
        let mut request = HttpRequest::new(body.into());
        *request.method_mut() = method;
        *request.uri_mut() = url
            .parse()
            .map_err(|e| LockRequestError::new(what, format!("bad url {url}: {e}")))?;
        *request.headers_mut() = headers;
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| LockRequestError::new(what, format!("no credentials: {e}")))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| LockRequestError::new(what, format!("cannot sign: {e}")))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| LockRequestError::new(what, format!("error sending request: {e}")))?;
        let (parts, body) = response.into_parts();
        let body = body
            .bytes()
            .await
            .map_err(|e| LockRequestError::new(what, format!("error reading the answer: {e}")))?;
        Ok((parts.status, parts.headers, body))
    }
}

/// A shared handle, as the bucket keeps it.
pub(crate) type SharedLocker = Arc<Locker>;

/// Concurrent retention requests while an archive is locked.
const LOCK_CONCURRENCY: usize = 16;

/// Commits backup `id` locked until `until`: every segment `manifest` names is locked first
/// (a failure there fails the commit, and nothing is listed), then the manifest is written
/// create-only with its lock in the same request. `Ok(false)` when a manifest is already there.
pub(super) fn commit_locked(
    shared: &Arc<Bucket>,
    id: &str,
    manifest: &[u8],
    until: DateTime<Utc>,
) -> Result<bool> {
    let locker = locker_of(shared)?;
    let files = referenced(manifest).ok_or_else(|| StorageError::BadManifest {
        file: format!("{id}/{MANIFEST_FILE}"),
        reason: "the manifest to commit names no readable segment list".into(),
    })?;
    let segments: Vec<Key> = files.iter().map(|f| shared.key(id, f)).collect();
    let (l, keys) = (locker.clone(), segments);
    let locked = io::block_on(async move {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(keys.into_iter().map(|key| {
            let l = l.clone();
            async move { l.set_retention(&key, until).await.map_err(|e| (key, e)) }
        }))
        .buffer_unordered(LOCK_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
    })
    .map_err(StorageError::Object)?;
    if let Err((key, e)) = locked {
        return Err(shared.error(&key, e.into_object()));
    }
    put_manifest_locked(shared, id, manifest, Precondition::Absent, until)
}

/// Writes `body` as the manifest of `id`, locked until `until` in the same request, if
/// `precondition` holds: create-only at a commit, `If-Match` on the ETag read when a locked
/// manifest is replaced (the old version stays locked too: retention keeps every version).
/// `Ok(false)` when it does not hold.
pub(super) fn put_manifest_locked(
    shared: &Arc<Bucket>,
    id: &str,
    body: &[u8],
    precondition: Precondition,
    until: DateTime<Utc>,
) -> Result<bool> {
    let locker = locker_of(shared)?;
    let key = shared.key(id, MANIFEST_FILE);
    let (k, body) = (key.clone(), Bytes::copy_from_slice(body));
    io::block_on(async move { locker.put_locked(&k, body, &precondition, until).await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&key, e.into_object()))
}

/// Refuses with `ArchiveLocked` while the manifest of `id` is under retention, as the bucket
/// itself says (a default retention rule counts, whatever the manifest records). Without
/// Object Lock configured there is nothing to ask.
pub(super) fn refuse_if_locked(shared: &Arc<Bucket>, id: &str) -> Result<()> {
    let Some(locker) = shared.lock.clone() else {
        return Ok(());
    };
    let key = shared.key(id, MANIFEST_FILE);
    let k = key.clone();
    let until = io::block_on(async move { locker.retention(&k).await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&key, e.into_object()))?;
    match until {
        Some(until) if until > Utc::now() => Err(StorageError::ArchiveLocked {
            backup_id: id.to_owned(),
            until,
        }),
        _ => Ok(()),
    }
}

fn locker_of(shared: &Bucket) -> Result<SharedLocker> {
    shared
        .lock
        .clone()
        .ok_or_else(|| StorageError::InvalidInput {
            field: "storage.s3.object_lock",
            value: shared.location.clone(),
            message: "a locked write to a bucket kvault was not told to lock".into(),
        })
}

/// The `immutable_until` a manifest records, read without parsing the rest.
pub(super) fn recorded_until(manifest: &[u8]) -> Option<DateTime<Utc>> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        immutable_until: Option<DateTime<Utc>>,
    }
    serde_json::from_slice::<Recorded>(manifest)
        .ok()?
        .immutable_until
}

/// S3's answer as an error: the status and the error code in its XML body.
fn refused(what: &'static str, status: StatusCode, body: &str) -> LockRequestError {
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("");
    LockRequestError::new(what, format!("the server answered {status} {code}"))
}

fn header(value: &str) -> Result<HeaderValue, LockRequestError> {
    HeaderValue::from_str(value)
        .map_err(|e| LockRequestError::new("request", format!("bad header value: {e}")))
}

/// RFC 3339 in whole seconds with a `Z`, as S3 writes its own dates.
fn s3_date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One path segment of a key, percent-encoded as SigV4 wants it (everything but the
/// unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_per_segment() {
        assert_eq!(encode_segment("p0"), "p0");
        assert_eq!(encode_segment("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn an_error_answer_names_its_code() {
        let e = refused(
            "retention",
            StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
        );
        assert_eq!(
            e.to_string(),
            "S3 Object Lock retention: the server answered 403 Forbidden AccessDenied"
        );
    }
}
