//! [`ObjectBackend`]: backups as objects in S3 or an S3-compatible server, through the
//! `object_store` crate. The layout is the local one with the root as a key prefix:
//! `{prefix}/{id}/manifest.json` and `{prefix}/{id}/p{n}/{offset:020}.seg`, so a backup
//! copied between a disk and a bucket by hand reads the same.
//!
//! Two more kinds of object exist only while a backup is written:
//! - `{id}/_writing`, the writer's lease: created create-only (the id's lock: of two writers
//!   of one id exactly one gets it), refreshed while the writer lives, deleted after the
//!   manifest. A lease older than `abandoned_after` belongs to a dead writer; its backup's
//!   remains are swept.
//! - `{id}/_uploads/{p0~offset.seg}`, one per open multipart upload, holding the upload id,
//!   so a sweep can abort the uploads of a writer killed mid-segment (the crate cannot list
//!   open uploads).
//!
//! The manifest is the commit point, written last and create-only (`If-None-Match: *`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::local::MANIFEST_FILE;
use super::{Backend, SegmentSource, Staging};
use crate::error::{Result, StorageError};

mod config;
mod io;
mod listing;
mod staging;
mod transfer;

pub use config::ObjectConfig;
pub use io::ObjectError;
use staging::ObjectStaging;
use transfer::ObjectSource;

/// The lease object of a backup being written.
const LEASE: &str = "_writing";
/// The folder of open-upload markers.
const UPLOADS: &str = "_uploads";
/// Smallest part S3 accepts (except the last one).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// What the backend's parts share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) multipart: Arc<dyn MultipartStore>,
    /// The key prefix every backup lives under (may be empty).
    pub(crate) root: Key,
    /// `s3://bucket/prefix`, for messages.
    pub(crate) location: String,
    pub(crate) part_size: usize,
    pub(crate) abandoned_after: Duration,
}

impl Shared {
    pub(crate) fn key(&self, id: &str, rest: &str) -> Key {
        let mut key = self.root.clone();
        for part in id.split('/').chain(rest.split('/')) {
            if !part.is_empty() {
                key = key.clone().join(part);
            }
        }
        key
    }

    /// `s3://bucket/prefix/{key without prefix}` for messages.
    pub(crate) fn describe(&self, key: &Key) -> String {
        let rel = key
            .prefix_match(&self.root)
            .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>())
            .unwrap_or_default();
        format!("{}/{}", self.location.trim_end_matches('/'), rel.join("/"))
    }

    pub(crate) fn error(&self, key: &Key, source: object_store::Error) -> StorageError {
        StorageError::Object(ObjectError::new(self.describe(key), source))
    }

    /// `outcome` of a call about `key`, with an absent object as `None` (not an error).
    pub(crate) fn absent_ok<T>(
        &self,
        key: &Key,
        outcome: object_store::Result<T>,
    ) -> Result<Option<T>> {
        match outcome {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                let e = ObjectError::new(self.describe(key), e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(StorageError::Object(e))
                }
            }
        }
    }

    /// The metadata of `key`, `None` if there is no such object.
    pub(crate) fn head(self: &Arc<Self>, key: &Key) -> Result<Option<object_store::ObjectMeta>> {
        let (s, k) = (self.clone(), key.clone());
        let outcome =
            io::block_on(async move { s.store.head(&k).await }).map_err(StorageError::Object)?;
        self.absent_ok(key, outcome)
    }
}

/// Backups in an S3 bucket (or an S3-compatible server).
#[derive(Clone)]
pub struct ObjectBackend {
    shared: Arc<Shared>,
    read_window: usize,
}

impl fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

/// What one listing found under a backup's prefix.
#[derive(Debug, Default)]
struct Remains {
    manifest: bool,
    lease: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
    objects: usize,
}

impl ObjectBackend {
    /// Connects to the bucket in `config.url`. Nothing is sent yet; the first request tells
    /// whether the bucket is there.
    pub fn connect(config: &ObjectConfig) -> Result<Self> {
        let invalid =
            |field: &'static str, value: String, message: String| StorageError::InvalidInput {
                field,
                value,
                message,
            };
        let rest = config.url.strip_prefix("s3://").ok_or_else(|| {
            invalid(
                "storage.url",
                config.url.clone(),
                "object storage urls start with s3:// (s3://bucket/prefix)".into(),
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(
                "storage.url",
                config.url.clone(),
                "names no bucket".into(),
            ));
        }
        if config.part_size < MIN_PART_SIZE {
            return Err(invalid(
                "storage.s3.part_size",
                config.part_size.to_string(),
                format!("must be at least {MIN_PART_SIZE} bytes (S3's smallest part)"),
            ));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(config.allow_http)
            .with_retry(RetryConfig {
                max_retries: config.max_retries,
                retry_timeout: config.retry_timeout,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(config.connect_timeout)
                    .with_timeout(config.request_timeout)
                    .with_allow_http(config.allow_http),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let s3 = Arc::new(builder.build().map_err(|e| {
            invalid(
                "storage.s3",
                config.url.clone(),
                format!("cannot configure the S3 client: {e}"),
            )
        })?);
        let root = Key::from(prefix.trim_matches('/'));
        let location = format!("s3://{bucket}/{root}");
        Ok(Self {
            shared: Arc::new(Shared {
                store: s3.clone(),
                multipart: s3,
                root,
                location: location.trim_end_matches('/').to_owned(),
                part_size: config.part_size,
                abandoned_after: config.abandoned_after,
            }),
            read_window: config.read_window.max(64 << 10),
        })
    }

    /// Everything under the root, grouped by backup id.
    fn survey(&self) -> Result<BTreeMap<String, Remains>> {
        let shared = self.shared.clone();
        let metas = io::block_on(async move {
            let stream = shared.store.list(Some(&shared.root));
            stream.try_collect::<Vec<_>>().await
        })
        .map_err(StorageError::Object)?
        .map_err(|e| self.shared.error(&self.shared.root, e))?;
        let mut by_id: BTreeMap<String, Remains> = BTreeMap::new();
        for meta in metas {
            let Some(parts) = meta.location.prefix_match(&self.shared.root) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            let [id, rest @ ..] = parts.as_slice() else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            let entry = by_id.entry(id.clone()).or_default();
            entry.objects += 1;
            entry.newest = entry.newest.max(Some(meta.last_modified));
            match rest {
                [name] if name == MANIFEST_FILE => entry.manifest = true,
                [name] if name == LEASE => entry.lease = Some(meta.last_modified),
                _ => {}
            }
        }
        Ok(by_id)
    }

    fn is_stale(&self, at: DateTime<Utc>) -> bool {
        let age = Utc::now().signed_duration_since(at);
        age.to_std()
            .is_ok_and(|age| age >= self.shared.abandoned_after)
    }

    fn head(&self, key: &Key) -> Result<Option<object_store::ObjectMeta>> {
        self.shared.head(key)
    }
}

impl Backend for ObjectBackend {
    fn location(&self) -> String {
        self.shared.location.clone()
    }

    fn begin(&self, id: &str) -> Result<Box<dyn Staging>> {
        let manifest = self.shared.key(id, MANIFEST_FILE);
        if self.head(&manifest)?.is_some() {
            return Err(StorageError::BackupExists(id.to_owned()));
        }
        let staging = match ObjectStaging::claim(self.shared.clone(), id)? {
            Some(staging) => staging,
            None => {
                // The id is leased. A dead writer's lease is cleared and claimed again;
                // a live one keeps its id.
                let lease = self.head(&self.shared.key(id, LEASE))?;
                if !lease.is_some_and(|l| self.is_stale(l.last_modified)) {
                    return Err(StorageError::BackupExists(id.to_owned()));
                }
                staging::clear(&self.shared, id, false)?;
                ObjectStaging::claim(self.shared.clone(), id)?
                    .ok_or_else(|| StorageError::BackupExists(id.to_owned()))?
            }
        };
        // A writer that committed this id between the first check and the claim deleted
        // its lease after its manifest, so the manifest shows now.
        if self.head(&manifest)?.is_some() {
            drop(staging.release());
            return Err(StorageError::BackupExists(id.to_owned()));
        }
        Ok(Box::new(staging))
    }

    fn read_manifest(&self, id: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let key = self.shared.key(id, MANIFEST_FILE);
        let (shared, k) = (self.shared.clone(), key.clone());
        let fetched = io::block_on(async move {
            let got = shared.store.get(&k).await?;
            if got.meta.size > limit {
                // Only as much as the caller needs to see it is too large.
                return shared.store.get_range(&k, 0..limit + 1).await;
            }
            got.bytes().await
        })
        .map_err(StorageError::Object)?;
        Ok(self.shared.absent_ok(&key, fetched)?.map(|b| b.to_vec()))
    }

    fn list_committed(&self) -> Result<Vec<String>> {
        Ok(self
            .survey()?
            .into_iter()
            .filter(|(_, r)| r.manifest)
            .map(|(id, _)| id)
            .collect())
    }

    fn list_manifests(&self) -> Result<Vec<(String, Option<String>)>> {
        listing::manifests(&self.shared)
    }

    fn open_segment(&self, id: &str, file: &str) -> Result<Box<dyn SegmentSource>> {
        let key = self.shared.key(id, file);
        let Some(meta) = self.head(&key)? else {
            return Err(StorageError::io(
                format!("{id}/{file}"),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such object"),
            ));
        };
        Ok(Box::new(ObjectSource::new(
            self.shared.clone(),
            key,
            meta.size,
        )))
    }

    fn read_window(&self) -> usize {
        self.read_window
    }

    fn delete(&self, id: &str) -> Result<()> {
        let manifest = self.shared.key(id, MANIFEST_FILE);
        if self.head(&manifest)?.is_none() {
            return Err(StorageError::BackupNotFound(id.to_owned()));
        }
        staging::delete_committed(&self.shared, id)
    }

    fn discard_unfinished(&self, id: &str) -> Result<()> {
        let committed = self.head(&self.shared.key(id, MANIFEST_FILE))?.is_some();
        staging::clear(&self.shared, id, committed)
    }

    fn sweep_abandoned(&self) -> usize {
        let survey = match self.survey() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the bucket to sweep abandoned backups");
                return 0;
            }
        };
        let mut swept = 0;
        for (id, remains) in survey {
            let dead_writer = remains.lease.is_some_and(|at| self.is_stale(at));
            // No lease and no manifest: the rest of an interrupted delete, or a writer that
            // died between claiming and its first object. Left alone while recent.
            let orphaned = remains.lease.is_none()
                && !remains.manifest
                && remains.newest.is_some_and(|at| self.is_stale(at));
            if !(dead_writer || orphaned) {
                continue;
            }
            // A committed backup keeps its objects; only the dead writer's lease goes.
            match staging::clear(&self.shared, &id, remains.manifest) {
                Ok(()) => swept += 1,
                Err(e) => {
                    tracing::warn!(backup_id = %id, error = %e, "could not sweep an abandoned backup")
                }
            }
        }
        swept
    }
}
