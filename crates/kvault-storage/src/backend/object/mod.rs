//! [`ObjectBackend`]: backups as objects in S3 (or an S3-compatible server) or Azure Blob
//! Storage, through the `object_store` crate; [`connect`] is the one place that knows which. The layout is the local one with the root as a key prefix, except
//! that each write attempt's segments live in a folder of their own:
//! `{prefix}/{id}/manifest.json` and `{prefix}/{id}/attempt-{hex}/p{n}/{offset:020}.seg`
//! (the manifest names them relative to the backup, so a backup copied between a disk and a
//! bucket by hand reads the same; backups of the layout without attempt folders still read).
//!
//! While a backup is written, `{id}/_writing` is its lease ([`lease`]), naming the attempt;
//! the manifest is the commit point, written last and create-only (`If-None-Match: *`). A
//! delete writes a marker first ([`removal`]); the sweep ([`sweep`]) removes only what it can
//! prove is kvault's and dead. The root is a prefix of a bucket shared with others, or the
//! whole bucket only when `storage.s3.exclusive_bucket` says it is kvault's alone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Backend, SegmentSource, Staging};
use crate::error::{Result, StorageError};

mod adopt;
mod config;
mod connect;
mod io;
mod layout;
mod lease;
mod listing;
mod lock;
mod removal;
mod staging;
mod sweep;
mod transfer;

pub use crate::error::ObjectError;
pub use config::{LockMode, ObjectConfig, ObjectLock};
use layout::{Entry, MANIFEST_FILE};
use staging::ObjectStaging;
use transfer::ObjectSource;

/// Smallest part S3 accepts (except the last one); Azure blocks may be smaller.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// The bucket (or container) the backend writes to, as all its parts use it: the client,
/// the key prefix, the part size.
pub(crate) struct Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) multipart: Arc<dyn MultipartStore>,
    /// The key prefix every backup lives under (may be empty).
    pub(crate) root: Key,
    /// `s3://bucket/prefix`, for messages.
    pub(crate) location: String,
    pub(crate) part_size: usize,
    pub(crate) abandoned_after: Duration,
    /// Object Lock requests, when kvault locks what it commits.
    pub(crate) lock: Option<lock::SharedLocker>,
}

impl Bucket {
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

/// Backups in an S3 bucket (or an S3-compatible server) or an Azure Blob container.
#[derive(Clone)]
pub struct ObjectBackend {
    shared: Arc<Bucket>,
    read_window: usize,
}

impl fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

impl ObjectBackend {
    /// Connects to the bucket or container in `config.url` (`s3://` or `az://`). Nothing is
    /// sent yet, the first request tells whether it is there; except with Object Lock, when
    /// the bucket's lock configuration is read first and a bucket without it is refused.
    pub fn connect(config: &ObjectConfig) -> Result<Self> {
        let connected = connect::connect(config)?;
        if let Some(locker) = connected.lock.clone() {
            io::block_on(async move { locker.check_bucket().await })
                .map_err(StorageError::Object)?
                .map_err(|e| {
                    StorageError::Object(ObjectError::new(
                        connected.location.clone(),
                        e.into_object(),
                    ))
                })?;
        }
        Ok(Self {
            shared: Arc::new(Bucket {
                store: connected.store,
                multipart: connected.multipart,
                root: connected.root,
                location: connected.location,
                part_size: config.part_size,
                abandoned_after: config.abandoned_after,
                lock: connected.lock,
            }),
            read_window: config.read_window.max(64 << 10),
        })
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
        // A live writer keeps its id; a dead one's lease is taken over (its objects stay in
        // its own attempt's folder until the sweep, never in the way of this attempt).
        let Some(staging) = ObjectStaging::claim(self.shared.clone(), id)? else {
            return Err(StorageError::BackupExists(id.to_owned()));
        };
        // A writer that committed this id between the first check and the claim released
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
        Ok(sweep::survey(&self.shared)?
            .into_iter()
            .filter(|(_, objects)| objects.iter().any(|f| f.entry == Entry::Manifest))
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
        removal::delete_committed(&self.shared, id)
    }

    fn replace_manifest(&self, id: &str, expected: &[u8], new: &[u8]) -> Result<()> {
        let Some((current, etag)) = removal::read_manifest(&self.shared, id)? else {
            return Err(StorageError::BackupNotFound(id.to_owned()));
        };
        if current != expected {
            return Err(StorageError::ManifestChanged(id.to_owned()));
        }
        // A locked manifest is replaced by a version locked as long.
        let until = lock::recorded_until(new).filter(|u| *u > chrono::Utc::now());
        if let (Some(until), Some(_)) = (until, &self.shared.lock) {
            let matches = lock::Precondition::Matches(etag);
            return match lock::put_manifest_locked(&self.shared, id, new, matches, until)? {
                true => Ok(()),
                false => Err(StorageError::ManifestChanged(id.to_owned())),
            };
        }
        let key = self.shared.key(id, MANIFEST_FILE);
        let (s, k, body) = (self.shared.clone(), key.clone(), new.to_vec());
        // `If-Match` on the ETag just read: a concurrent change makes this one fail.
        let mode = object_store::PutMode::Update(object_store::UpdateVersion {
            e_tag: Some(etag),
            version: None,
        });
        let put = io::block_on(async move {
            lease::put_if(&s, &k, object_store::PutPayload::from(body), mode).await
        })
        .map_err(StorageError::Object)?
        .map_err(|e| self.shared.error(&key, e))?;
        match put {
            Some(_) => Ok(()),
            None => Err(StorageError::ManifestChanged(id.to_owned())),
        }
    }

    fn discard_unfinished(&self, id: &str) -> Result<()> {
        sweep::discard(&self.shared, id)
    }

    fn begin_resume(
        &self,
        id: &str,
        adopt: &crate::backend::Adoption,
    ) -> Result<(Box<dyn Staging>, crate::backend::Adopted)> {
        let (staging, adopted) = adopt::begin_resume(&self.shared, id, adopt)?;
        Ok((Box::new(staging), adopted))
    }

    fn sweep_abandoned(&self) -> usize {
        sweep::sweep(&self.shared)
    }
}
