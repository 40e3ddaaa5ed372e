//! Removing objects, each removal proving first that what it deletes is kvault's and dead:
//! a write attempt's own folder, a committed backup's delete (with a marker a sweep can
//! finish), and the keys a manifest names.
//!
//! A delete of a committed backup writes `{id}/_deleting/{hex}` first, naming the manifest's
//! ETag and the segment files it lists, then deletes the manifest (from here the backup is
//! gone, never listed half-deleted), then those files, then the marker. A sweep that finds a
//! stale marker finishes the same steps; a manifest with another ETag is a new backup of the
//! id and keeps everything it names.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::io::{self, ObjectError};
use super::layout::{classify, is_segment_file, random_hex, Entry, DELETING, MANIFEST_FILE};
use super::lock;
use super::staging::delete;
use super::transfer::abort_marked_upload;
use super::Bucket;
use crate::error::{Result, StorageError};
use crate::format::MAX_MANIFEST_LEN;

/// A listed object under a backup's prefix that is kvault's.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) id: String,
    pub(super) key: Key,
    /// Relative to the backup: `attempt-…/p0/….seg`.
    pub(super) rel: String,
    pub(super) entry: Entry,
    pub(super) modified: chrono::DateTime<chrono::Utc>,
}

/// kvault's objects under `{id}/`, or under `{id}/{sub}` when given.
pub(super) fn list_id(shared: &Arc<Bucket>, id: &str, sub: &str) -> Result<Vec<Found>> {
    let prefix = shared.key(id, sub);
    let (s, p) = (shared.clone(), prefix.clone());
    let metas = io::block_on(async move { s.store.list(Some(&p)).try_collect::<Vec<_>>().await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&prefix, e))?;
    Ok(metas.into_iter().filter_map(|m| found(shared, m)).collect())
}

/// `meta` as one of kvault's objects, `None` if its key is not of kvault's layout.
pub(super) fn found(shared: &Bucket, meta: object_store::ObjectMeta) -> Option<Found> {
    let parts: Vec<String> = meta
        .location
        .prefix_match(&shared.root)?
        // The '~' of an upload marker's name is stored percent-encoded.
        .map(|p| p.as_ref().replace("%7E", "~"))
        .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let (id, entry) = classify(&refs)?;
    Some(Found {
        id,
        rel: parts[1..].join("/"),
        key: meta.location,
        entry,
        modified: meta.last_modified,
    })
}

/// Removes every object of write attempt `attempt` of `id` (aborting its open uploads).
pub(super) fn clear_attempt(shared: &Arc<Bucket>, id: &str, attempt: &str) -> Result<()> {
    let objects = list_id(shared, id, attempt)?;
    remove(shared, id, &objects)
}

/// Removes `objects` of backup `id`: aborts the uploads upload markers name, then deletes.
pub(super) fn remove(shared: &Arc<Bucket>, id: &str, objects: &[Found]) -> Result<()> {
    for f in objects {
        if let Entry::UploadMarker(_) = f.entry {
            let target = f.rel.replace("_uploads/", "").replace('~', "/");
            abort_marked_upload(shared, &f.key, &shared.key(id, &target))?;
        }
    }
    delete_all(shared, objects.iter().map(|f| f.key.clone()).collect())
}

/// Deletes `keys` in bulk (one request per thousand on S3).
pub(super) fn delete_all(shared: &Arc<Bucket>, keys: Vec<Key>) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let s = shared.clone();
    let failures = io::block_on(async move {
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        s.store
            .delete_stream(stream)
            .filter_map(|r| async move { r.err() })
            .collect::<Vec<_>>()
            .await
    })
    .map_err(StorageError::Object)?;
    for e in failures {
        let e = ObjectError::new(shared.location.clone(), e);
        if !e.is_not_found() {
            return Err(StorageError::Object(e));
        }
    }
    Ok(())
}

/// The manifest of `id` and its ETag; `None` if there is none.
pub(super) fn read_manifest(shared: &Arc<Bucket>, id: &str) -> Result<Option<(Vec<u8>, String)>> {
    let key = shared.key(id, MANIFEST_FILE);
    let (s, k) = (shared.clone(), key.clone());
    let got = io::block_on(async move {
        let got = s.store.get(&k).await?;
        let etag = got.meta.e_tag.clone().unwrap_or_default();
        if got.meta.size > MAX_MANIFEST_LEN {
            return Ok((Vec::new(), etag));
        }
        Ok((got.bytes().await?.to_vec(), etag))
    })
    .map_err(StorageError::Object)?;
    shared.absent_ok(&key, got)
}

#[derive(Deserialize)]
struct Files {
    partitions: Vec<PartitionFiles>,
}
#[derive(Deserialize)]
struct PartitionFiles {
    segments: Vec<SegmentFile>,
}
#[derive(Deserialize)]
struct SegmentFile {
    file: String,
}

/// The segment files a manifest names; `None` if it cannot be read as a manifest, and then
/// no segment under its id may be removed on its account.
pub(super) fn referenced(manifest: &[u8]) -> Option<BTreeSet<String>> {
    let files: Files = serde_json::from_slice(manifest).ok()?;
    Some(
        files
            .partitions
            .into_iter()
            .flat_map(|p| p.segments)
            .map(|s| s.file)
            .collect(),
    )
}

/// What a delete marker says.
#[derive(Serialize, Deserialize)]
struct DeleteMarker {
    /// The ETag of the manifest being deleted: only that manifest is removed.
    manifest_etag: String,
    /// The segment files (relative to the backup) the delete removes.
    files: Vec<String>,
}

/// Deletes committed backup `id` (see the module doc). `BackupNotFound` if there is none.
pub(super) fn delete_committed(shared: &Arc<Bucket>, id: &str) -> Result<()> {
    let Some((bytes, etag)) = read_manifest(shared, id)? else {
        return Err(StorageError::BackupNotFound(id.to_owned()));
    };
    lock::refuse_if_locked(shared, id)?;
    let files: Vec<String> = match referenced(&bytes) {
        Some(files) => files.into_iter().collect(),
        // An unreadable manifest: its id's segments are all this backup's (no writer can
        // claim an id while its manifest is there).
        None => list_id(shared, id, "")?
            .into_iter()
            .filter(|f| matches!(f.entry, Entry::Segment(_)))
            .map(|f| f.rel)
            .collect(),
    };
    let marker = shared.key(id, &format!("{DELETING}/{}", random_hex()));
    let body = serde_json::to_vec(&DeleteMarker {
        manifest_etag: etag,
        files,
    })
    .map_err(|e| StorageError::BadManifest {
        file: shared.describe(&marker),
        reason: e.to_string(),
    })?;
    let (s, k) = (shared.clone(), marker.clone());
    io::block_on(async move { s.store.put(&k, PutPayload::from(body)).await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&marker, e))?;
    let manifest = shared.key(id, MANIFEST_FILE);
    let (s, k) = (shared.clone(), manifest.clone());
    if let Err(e) =
        io::block_on(async move { s.store.delete(&k).await }).map_err(StorageError::Object)?
    {
        let e = ObjectError::new(shared.describe(&manifest), e);
        let _ = delete(shared, &marker);
        return Err(if e.is_not_found() {
            StorageError::BackupNotFound(id.to_owned())
        } else {
            StorageError::Object(e)
        });
    }
    if let Err(e) = finish_delete(shared, id, &marker) {
        tracing::warn!(backup_id = %id, error = %e, "backup deleted, but some of its objects stay until the next sweep");
    }
    Ok(())
}

/// Finishes the delete `marker` records: the manifest it names (if still there, by ETag),
/// then its files (never one the id's present manifest names), then the marker.
pub(super) fn finish_delete(shared: &Arc<Bucket>, id: &str, marker: &Key) -> Result<()> {
    let (s, k) = (shared.clone(), marker.clone());
    let got = io::block_on(async move { s.store.get(&k).await?.bytes().await })
        .map_err(StorageError::Object)?;
    let Some(bytes) = shared.absent_ok(marker, got)? else {
        return Ok(());
    };
    let Ok(said) = serde_json::from_slice::<DeleteMarker>(&bytes) else {
        tracing::warn!(key = %marker, "an unreadable delete marker is left alone");
        return Ok(());
    };
    let mut keep = BTreeSet::new();
    if let Some((bytes, etag)) = read_manifest(shared, id)? {
        if etag == said.manifest_etag {
            delete(shared, &shared.key(id, MANIFEST_FILE))?;
        } else {
            // A new backup of this id: what it names stays, and an unreadable one keeps all.
            let Some(named) = referenced(&bytes) else {
                return Ok(());
            };
            keep = named;
        }
    }
    let doomed = said
        .files
        .iter()
        .filter(|f| is_segment_file(f) && !keep.contains(*f))
        .map(|f| shared.key(id, f))
        .collect();
    delete_all(shared, doomed)?;
    delete(shared, marker)
}
