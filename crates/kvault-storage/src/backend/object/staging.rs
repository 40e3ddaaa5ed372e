//! A backup being written to object storage: its lease (claimed create-only, refreshed by a
//! heartbeat), the create-only manifest that commits it, and the removal of what an aborted,
//! dead or deleted backup leaves.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::oneshot;

use super::io::{self, ObjectError};
use super::transfer::ObjectSinks;
use super::{Shared, LEASE, MANIFEST_FILE, UPLOADS};
use crate::backend::{SegmentSinks, Staging};
use crate::error::{Result, StorageError};

/// Writes `body` to `key` only if no object is there. `Ok(false)` when one is.
fn put_create(shared: &Arc<Shared>, key: &Key, body: Vec<u8>) -> Result<bool> {
    let (s, k) = (shared.clone(), key.clone());
    let put = io::block_on(async move {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        s.store.put_opts(&k, PutPayload::from(body), opts).await
    })
    .map_err(StorageError::Object)?;
    match put {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = ObjectError::new(shared.describe(key), e);
            if e.is_already_exists() {
                Ok(false)
            } else {
                Err(StorageError::Object(e))
            }
        }
    }
}

/// Deletes `key`; an absent object is not an error.
fn delete(shared: &Arc<Shared>, key: &Key) -> Result<()> {
    let (s, k) = (shared.clone(), key.clone());
    let outcome =
        io::block_on(async move { s.store.delete(&k).await }).map_err(StorageError::Object)?;
    shared.absent_ok(key, outcome).map(|_| ())
}

/// What the lease says: who holds the id. For a person looking at the bucket.
fn lease_body() -> Vec<u8> {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!(
        "{{\"pid\":{},\"host\":{:?},\"refreshed_at\":{:?}}}\n",
        std::process::id(),
        host,
        chrono::Utc::now().to_rfc3339()
    )
    .into_bytes()
}

pub(super) struct ObjectStaging {
    shared: Arc<Shared>,
    id: String,
    /// Dropping it stops the lease heartbeat.
    heartbeat: Option<oneshot::Sender<()>>,
    done: bool,
}

impl ObjectStaging {
    /// Claims backup `id` by creating its lease; `None` if someone holds it.
    pub(super) fn claim(shared: Arc<Shared>, id: &str) -> Result<Option<Self>> {
        let lease = shared.key(id, LEASE);
        if !put_create(&shared, &lease, lease_body())? {
            return Ok(None);
        }
        let (stop, mut stopped) = oneshot::channel::<()>();
        let every = (shared.abandoned_after / 4).max(std::time::Duration::from_millis(100));
        let beat = shared.clone();
        io::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(every) => {}
                }
                let body = PutPayload::from(lease_body());
                if let Err(e) = beat.store.put(&lease, body).await {
                    tracing::warn!(key = %lease, error = %e, "could not refresh a backup's lease");
                }
            }
        });
        Ok(Some(Self {
            shared,
            id: id.to_owned(),
            heartbeat: Some(stop),
            done: false,
        }))
    }

    /// Gives the id back without touching anything but the lease.
    pub(super) fn release(mut self) -> Result<()> {
        self.done = true;
        self.heartbeat = None;
        delete(&self.shared, &self.shared.key(&self.id, LEASE))
    }
}

impl Staging for ObjectStaging {
    fn sinks(&self, partition_dir: &str) -> Result<Box<dyn SegmentSinks>> {
        Ok(Box::new(ObjectSinks::new(
            self.shared.clone(),
            &self.id,
            partition_dir,
        )))
    }

    fn segment_size(&self, file: &str) -> Result<Option<u64>> {
        let meta = self.shared.head(&self.shared.key(&self.id, file))?;
        Ok(meta.map(|m| m.size))
    }

    fn commit(&mut self, manifest: &[u8]) -> Result<()> {
        let key = self.shared.key(&self.id, MANIFEST_FILE);
        if !put_create(&self.shared, &key, manifest.to_vec())? {
            return Err(StorageError::BackupExists(self.id.clone()));
        }
        self.done = true;
        self.heartbeat = None;
        // The backup is committed; a lease left behind is swept as a dead writer's, which
        // keeps a committed backup's objects.
        if let Err(e) = delete(&self.shared, &self.shared.key(&self.id, LEASE)) {
            tracing::warn!(backup_id = %self.id, error = %e, "committed, but the lease stays until the next sweep");
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        self.done = true;
        self.heartbeat = None;
        clear(&self.shared, &self.id, false)
    }
}

impl Drop for ObjectStaging {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.abort() {
                tracing::warn!(backup_id = %self.id, error = %e, "could not remove an unfinished backup; the sweep will");
            }
        }
    }
}

/// Removes backup `id`'s remains: aborts the uploads its markers name, deletes every object
/// under it (all but the manifest when `keep_manifest`), the lease last.
pub(super) fn clear(shared: &Arc<Shared>, id: &str, keep_manifest: bool) -> Result<()> {
    let prefix = shared.key(id, "");
    let (s, p) = (shared.clone(), prefix.clone());
    let objects = io::block_on(async move { s.store.list(Some(&p)).try_collect::<Vec<_>>().await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&prefix, e))?;
    let uploads = shared.key(id, UPLOADS);
    let lease = shared.key(id, LEASE);
    let manifest = shared.key(id, MANIFEST_FILE);
    let mut doomed = Vec::new();
    for meta in objects {
        let key = meta.location;
        if key == lease || (keep_manifest && key == manifest) {
            continue;
        }
        if key.prefix_matches(&uploads) {
            super::transfer::abort_marked_upload(shared, id, &key)?;
        }
        doomed.push(key);
    }
    delete_all(shared, doomed)?;
    delete(shared, &lease)
}

/// Deletes `keys` in bulk (one request per thousand on S3).
fn delete_all(shared: &Arc<Shared>, keys: Vec<Key>) -> Result<()> {
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

/// Deletes committed backup `id`: takes its lease so no writer can start on the id while the
/// objects go, removes the manifest (the commit point: from here the backup is gone), then
/// the rest, the lease last. A crash in between leaves a lease that goes stale and is swept.
pub(super) fn delete_committed(shared: &Arc<Shared>, id: &str) -> Result<()> {
    let lease = shared.key(id, LEASE);
    let (s, k) = (shared.clone(), lease.clone());
    io::block_on(async move { s.store.put(&k, PutPayload::from(lease_body())).await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&lease, e))?;
    let manifest = shared.key(id, MANIFEST_FILE);
    let (s, k) = (shared.clone(), manifest.clone());
    match io::block_on(async move { s.store.delete(&k).await }).map_err(StorageError::Object)? {
        Ok(()) => {}
        Err(e) => {
            let e = ObjectError::new(shared.describe(&manifest), e);
            let _ = delete(shared, &lease);
            return Err(if e.is_not_found() {
                StorageError::BackupNotFound(id.to_owned())
            } else {
                StorageError::Object(e)
            });
        }
    }
    if let Err(e) = clear(shared, id, false) {
        tracing::warn!(backup_id = %id, error = %e, "backup deleted, but some of its objects stay until the next sweep");
    }
    Ok(())
}
