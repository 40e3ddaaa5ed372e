//! A backup being written to object storage: its lease (claimed, refreshed by a heartbeat,
//! fencing this attempt), the attempt's own folder its segments go to, and the create-only
//! manifest that commits it. Abort removes only this attempt's objects.

use std::sync::Arc;

use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use tokio::sync::oneshot;

use super::layout::{new_attempt, MANIFEST_FILE};
use super::lease::{put_if, Lease};
use super::lock;
use super::removal;
use super::transfer::ObjectSinks;
use super::{io, Bucket};
use crate::backend::{SegmentSinks, Staging};
use crate::error::{Result, StorageError};

/// Writes `body` to `key` only if no object is there. `Ok(false)` when one is.
pub(super) fn put_create(shared: &Arc<Bucket>, key: &Key, body: Vec<u8>) -> Result<bool> {
    let (s, k) = (shared.clone(), key.clone());
    let put =
        io::block_on(async move { put_if(&s, &k, PutPayload::from(body), PutMode::Create).await })
            .map_err(StorageError::Object)?
            .map_err(|e| shared.error(key, e))?;
    Ok(put.is_some())
}

/// Deletes `key`; an absent object is not an error.
pub(super) fn delete(shared: &Arc<Bucket>, key: &Key) -> Result<()> {
    let (s, k) = (shared.clone(), key.clone());
    let outcome =
        io::block_on(async move { s.store.delete(&k).await }).map_err(StorageError::Object)?;
    shared.absent_ok(key, outcome).map(|_| ())
}

pub(super) struct ObjectStaging {
    shared: Arc<Bucket>,
    id: String,
    /// This write attempt's folder under the id: `attempt-{hex}`.
    attempt: String,
    lease: Arc<Lease>,
    /// Dropping it stops the lease heartbeat.
    heartbeat: Option<oneshot::Sender<()>>,
    /// Folders of earlier attempts of this id whose segments this one copied: removed once
    /// this attempt's manifest is in (until then they are the resume's source).
    retired: Vec<String>,
    /// When Object Lock releases this backup, fixed when the manifest is made.
    retain_until: Option<chrono::DateTime<chrono::Utc>>,
    done: bool,
}

impl ObjectStaging {
    /// Claims backup `id` for a new write attempt; `None` if a live writer holds it.
    pub(super) fn claim(shared: Arc<Bucket>, id: &str) -> Result<Option<Self>> {
        let attempt = new_attempt();
        let Some(lease) = Lease::claim(&shared, id, &attempt)? else {
            return Ok(None);
        };
        Ok(Some(Self::holding(shared, id, attempt, lease)))
    }

    fn holding(shared: Arc<Bucket>, id: &str, attempt: String, lease: Arc<Lease>) -> Self {
        Self {
            heartbeat: Some(lease.heartbeat()),
            shared,
            id: id.to_owned(),
            attempt,
            lease,
            retired: Vec::new(),
            retain_until: None,
            done: false,
        }
    }

    /// Claims backup `id` for a new attempt whatever its lease's age (its writer is known to
    /// be gone), fencing the old writer; also the attempt the old lease named.
    pub(super) fn claim_forced(
        shared: Arc<Bucket>,
        id: &str,
    ) -> Result<Option<(Self, Option<String>)>> {
        let attempt = new_attempt();
        let Some((lease, old)) = Lease::claim_forced(&shared, id, &attempt)? else {
            return Ok(None);
        };
        Ok(Some((Self::holding(shared, id, attempt, lease), old)))
    }

    /// This attempt's folder.
    pub(super) fn attempt(&self) -> &str {
        &self.attempt
    }

    /// Whether this attempt still holds the id (checked before each adopted segment).
    pub(super) fn confirm(&self) -> Result<()> {
        self.lease.confirm()
    }

    /// Removes `attempt`'s folder once this attempt has committed.
    pub(super) fn retire(&mut self, attempt: String) {
        if attempt != self.attempt && !self.retired.contains(&attempt) {
            self.retired.push(attempt);
        }
    }

    /// Gives the id back without touching anything but the lease (nothing was written).
    pub(super) fn release(mut self) -> Result<()> {
        self.done = true;
        self.heartbeat = None;
        self.lease.release()
    }
}

impl Staging for ObjectStaging {
    fn segment_dir(&self, partition_dir: &str) -> String {
        format!("{}/{partition_dir}", self.attempt)
    }

    fn sinks(&self, partition_dir: &str) -> Result<Box<dyn SegmentSinks>> {
        if self.lease.is_lost() {
            return Err(self.lease.lost_error());
        }
        // Whatever the caller passes, segments land in this attempt's folder.
        let within = partition_dir
            .strip_prefix(&format!("{}/", self.attempt))
            .unwrap_or(partition_dir);
        Ok(Box::new(ObjectSinks::new(
            self.shared.clone(),
            &self.id,
            &self.attempt,
            within,
            self.lease.clone(),
        )))
    }

    fn segment_size(&self, file: &str) -> Result<Option<u64>> {
        let meta = self.shared.head(&self.shared.key(&self.id, file))?;
        Ok(meta.map(|m| m.size))
    }

    fn retain_until(&mut self) -> Option<chrono::DateTime<chrono::Utc>> {
        let locker = self.shared.lock.as_ref()?;
        Some(
            *self
                .retain_until
                .get_or_insert_with(|| locker.until_from(chrono::Utc::now())),
        )
    }

    fn commit(&mut self, manifest: &[u8]) -> Result<()> {
        // Fresh from here, so no one can call the lease stale before the manifest is in.
        self.lease.confirm()?;
        let created = match self.retain_until() {
            Some(until) => lock::commit_locked(&self.shared, &self.id, manifest, until)?,
            None => put_create(
                &self.shared,
                &self.shared.key(&self.id, MANIFEST_FILE),
                manifest.to_vec(),
            )?,
        };
        if !created {
            return Err(StorageError::BackupExists(self.id.clone()));
        }
        self.done = true;
        self.heartbeat = None;
        // Committed. A lease left behind beside a manifest is removed by the sweep, which
        // keeps every object the manifest names.
        if let Err(e) = self.lease.release() {
            tracing::warn!(backup_id = %self.id, error = %e, "committed, but the lease stays until the next sweep");
        }
        // The manifest names only this attempt's copies: the folders they came from are dead.
        for attempt in std::mem::take(&mut self.retired) {
            if let Err(e) = removal::clear_attempt(&self.shared, &self.id, &attempt) {
                tracing::warn!(backup_id = %self.id, %attempt, error = %e, "an earlier attempt's folder stays until the sweep");
            }
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        self.done = true;
        self.heartbeat = None;
        // Only this attempt's own folder: nothing another attempt wrote is under it.
        removal::clear_attempt(&self.shared, &self.id, &self.attempt)?;
        self.lease.release()
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
