//! The lease of a backup id in object storage, `{id}/_writing`: which write attempt holds the
//! id, and the fencing that keeps a writer that lost it away from its successor's objects.
//!
//! A lease is created create-only, or taken over from a dead writer with a conditional PUT
//! (`If-Match` on the ETag the server's clock says is stale). Every later write of it (the
//! heartbeat, the refresh before a commit, the one before its delete) is conditional on the
//! ETag this writer last wrote, so once anyone else has written the lease, this writer's
//! next attempt fails and it stops: a writer never rewrites a lease it no longer holds, and a
//! lease is only deleted right after a successful conditional refresh (S3 cannot delete
//! conditionally), when no one can call it stale.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use tokio::sync::oneshot;

use super::io::{self, ObjectError};
use super::layout::{random_hex, CLOCK, LEASE};
use super::Bucket;
use crate::error::{Result, StorageError};

/// What the lease says: the attempt that holds the id, and for a person looking at the
/// bucket, who and when. The nonce keeps two bodies (and so their ETags) from ever matching.
fn body(attempt: &str) -> PutPayload {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    PutPayload::from(
        serde_json::json!({
            "attempt": attempt,
            "pid": std::process::id(),
            "host": host,
            "refreshed_at": Utc::now().to_rfc3339(),
            "nonce": random_hex(),
        })
        .to_string()
        .into_bytes(),
    )
}

/// Writes `body` to `key` in `mode`; the new ETag, or `None` when the condition failed (an
/// object exists for a create, or not the expected one for an update).
pub(super) async fn put_if(
    shared: &Bucket,
    key: &Key,
    body: PutPayload,
    mode: PutMode,
) -> object_store::Result<Option<String>> {
    let opts = PutOptions {
        mode,
        ..PutOptions::default()
    };
    match shared.store.put_opts(key, body, opts).await {
        Ok(put) => Ok(Some(put.e_tag.unwrap_or_default())),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(None),
        Err(e) => Err(e),
    }
}

fn update(etag: String) -> PutMode {
    PutMode::Update(UpdateVersion {
        e_tag: Some(etag),
        version: None,
    })
}

/// The server's clock: the `Last-Modified` of an object written just now. Staleness is
/// judged by it, never by this host's clock.
pub(super) fn server_now(shared: &Arc<Bucket>) -> Result<DateTime<Utc>> {
    // A key of its own, so concurrent probes never delete each other's.
    let key = shared
        .root
        .clone()
        .join(format!("{CLOCK}-{}", random_hex()));
    let (s, k) = (shared.clone(), key.clone());
    let outcome = io::block_on(async move {
        s.store.put(&k, PutPayload::from_static(b"kvault")).await?;
        let meta = s.store.head(&k).await?;
        // Only the time was wanted.
        let _ = s.store.delete(&k).await;
        Ok(meta.last_modified)
    })
    .map_err(StorageError::Object)?;
    outcome.map_err(|e| shared.error(&key, e))
}

/// Whether an object last modified `at` is older than `abandoned_after` at server time `now`.
pub(super) fn is_stale(shared: &Bucket, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(at)
        .to_std()
        .is_ok_and(|age| age >= shared.abandoned_after)
}

/// Why a writer that lost its lease stops.
pub(super) const LOST: &str = "this writer lost the backup id's lease (it went stale and \
    another writer or the sweep took it over); it stopped without touching the other's objects";

/// A lease as a sweep sees it.
#[derive(Debug)]
pub(super) struct Observed {
    /// The attempt it names; `None` for a lease of the layout without attempts, or unreadable.
    pub(super) attempt: Option<String>,
    pub(super) etag: Option<String>,
    pub(super) modified: DateTime<Utc>,
}

/// Reads the lease of `id`; `None` if there is none.
pub(super) fn observe(shared: &Arc<Bucket>, id: &str) -> Result<Option<Observed>> {
    let key = shared.key(id, LEASE);
    let (s, k) = (shared.clone(), key.clone());
    let got = io::block_on(async move {
        let got = s.store.get(&k).await?;
        let meta = got.meta.clone();
        Ok((meta, got.bytes().await?))
    })
    .map_err(StorageError::Object)?;
    let Some((meta, bytes)) = shared.absent_ok(&key, got)? else {
        return Ok(None);
    };
    let attempt = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("attempt")?.as_str().map(str::to_owned));
    Ok(Some(Observed {
        attempt,
        etag: meta.e_tag,
        modified: meta.last_modified,
    }))
}

/// Takes the lease of `id` from whoever wrote the version `etag`, for a sweep or a discard
/// that is about to remove the id's remains; `Some` holds it (release it when done), `None`
/// means someone wrote the lease since and the caller must leave the id alone.
pub(super) fn take(shared: &Arc<Bucket>, id: &str, etag: &str) -> Result<Option<Arc<Lease>>> {
    let key = shared.key(id, LEASE);
    let attempt = format!("sweep-{}", random_hex());
    let (s, k, b, mode) = (
        shared.clone(),
        key.clone(),
        body(&attempt),
        update(etag.into()),
    );
    let put = io::block_on(async move { put_if(&s, &k, b, mode).await })
        .map_err(StorageError::Object)?
        .map_err(|e| shared.error(&key, e))?;
    Ok(put.map(|etag| Lease::held(shared, id, key, attempt, etag)))
}

/// A lease this process holds.
pub(super) struct Lease {
    shared: Arc<Bucket>,
    id: String,
    key: Key,
    attempt: String,
    /// The ETag this holder last wrote; `None` once released or lost. Locked across each
    /// conditional request, so the heartbeat and the writer never race each other.
    etag: tokio::sync::Mutex<Option<String>>,
    lost: AtomicBool,
}

impl Lease {
    fn held(shared: &Arc<Bucket>, id: &str, key: Key, attempt: String, etag: String) -> Arc<Self> {
        Arc::new(Self {
            shared: shared.clone(),
            id: id.to_owned(),
            key,
            attempt,
            etag: tokio::sync::Mutex::new(Some(etag)),
            lost: AtomicBool::new(false),
        })
    }

    /// Claims `id` for write attempt `attempt`: creates its lease, or takes over one the
    /// server's clock says is stale. `None` if a live writer holds it.
    pub(super) fn claim(
        shared: &Arc<Bucket>,
        id: &str,
        attempt: &str,
    ) -> Result<Option<Arc<Self>>> {
        let key = shared.key(id, LEASE);
        let put = |mode: PutMode| {
            let (s, k, b) = (shared.clone(), key.clone(), body(attempt));
            io::block_on(async move { put_if(&s, &k, b, mode).await })
                .map_err(StorageError::Object)?
                .map_err(|e| shared.error(&key, e))
        };
        // Twice: a lease released between the create and the look at it frees the id.
        for _ in 0..2 {
            if let Some(etag) = put(PutMode::Create)? {
                return Ok(Some(Self::held(shared, id, key, attempt.into(), etag)));
            }
            let Some(meta) = shared.head(&key)? else {
                continue;
            };
            if !is_stale(shared, meta.last_modified, server_now(shared)?) {
                return Ok(None);
            }
            let Some(etag) = meta.e_tag else {
                return Ok(None);
            };
            return Ok(put(update(etag))?
                .map(|etag| Self::held(shared, id, key.clone(), attempt.into(), etag)));
        }
        Ok(None)
    }

    /// Claims `id` for write attempt `attempt` whatever the age of the lease there (the job
    /// system knows its writer is gone): creates it, or takes it over with `If-Match` on the
    /// ETag just read, so the old writer's next refresh fails and it stops. Also returns the
    /// attempt the taken-over lease named. `None` if the lease kept changing under it.
    pub(super) fn claim_forced(
        shared: &Arc<Bucket>,
        id: &str,
        attempt: &str,
    ) -> Result<Option<(Arc<Self>, Option<String>)>> {
        let key = shared.key(id, LEASE);
        let put = |mode: PutMode| {
            let (s, k, b) = (shared.clone(), key.clone(), body(attempt));
            io::block_on(async move { put_if(&s, &k, b, mode).await })
                .map_err(StorageError::Object)?
                .map_err(|e| shared.error(&key, e))
        };
        for _ in 0..3 {
            if let Some(etag) = put(PutMode::Create)? {
                return Ok(Some((
                    Self::held(shared, id, key, attempt.into(), etag),
                    None,
                )));
            }
            let Some(seen) = observe(shared, id)? else {
                continue;
            };
            let Some(etag) = seen.etag else {
                return Ok(None);
            };
            if let Some(etag) = put(update(etag))? {
                let lease = Self::held(shared, id, key.clone(), attempt.into(), etag);
                return Ok(Some((lease, seen.attempt)));
            }
        }
        Ok(None)
    }

    /// Whether another writer (or a sweep) took the id over from this one.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// What a writer that lost its lease reports.
    pub(super) fn lost_error(&self) -> StorageError {
        StorageError::io(format!("{}/{LEASE}", self.id), std::io::Error::other(LOST))
    }

    /// Rewrites the lease if this holder still holds it. `Ok(false)` when it does not (lost
    /// or released): the holder must stop.
    async fn refresh(&self) -> object_store::Result<bool> {
        let mut etag = self.etag.lock().await;
        let Some(current) = etag.clone() else {
            return Ok(false);
        };
        match put_if(
            &self.shared,
            &self.key,
            body(&self.attempt),
            update(current),
        )
        .await?
        {
            Some(next) => {
                *etag = Some(next);
                Ok(true)
            }
            None => {
                *etag = None;
                self.lost.store(true, Ordering::SeqCst);
                Ok(false)
            }
        }
    }

    /// Refreshes the lease from blocking code; the lost-lease error if it is not held.
    pub(super) fn confirm(self: &Arc<Self>) -> Result<()> {
        let lease = self.clone();
        let held = io::block_on(async move { lease.refresh().await })
            .map_err(StorageError::Object)?
            .map_err(|e| self.shared.error(&self.key, e))?;
        if held {
            Ok(())
        } else {
            Err(self.lost_error())
        }
    }

    /// Deletes the lease if this holder still holds it (checked by a conditional refresh
    /// just before, so the lease is fresh and no one can take it in between); a lease lost
    /// to someone else is left to them.
    pub(super) fn release(self: &Arc<Self>) -> Result<()> {
        let lease = self.clone();
        let outcome = io::block_on(async move {
            let mut etag = lease.etag.lock().await;
            let Some(current) = etag.take() else {
                return Ok(());
            };
            let b = body(&lease.attempt);
            if put_if(&lease.shared, &lease.key, b, update(current))
                .await?
                .is_none()
            {
                lease.lost.store(true, Ordering::SeqCst);
                return Ok(());
            }
            lease.shared.store.delete(&lease.key).await
        })
        .map_err(StorageError::Object)?;
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = ObjectError::new(self.shared.describe(&self.key), e);
                if e.is_not_found() {
                    Ok(())
                } else {
                    Err(StorageError::Object(e))
                }
            }
        }
    }

    /// Refreshes the lease every quarter of `abandoned_after` until the returned sender is
    /// dropped, or until a refresh finds the lease taken over (then the writer's next step
    /// fails with [`Lease::lost_error`]).
    pub(super) fn heartbeat(self: &Arc<Self>) -> oneshot::Sender<()> {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let every = (self.shared.abandoned_after / 4).max(std::time::Duration::from_millis(100));
        let lease = self.clone();
        io::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(every) => {}
                }
                match lease.refresh().await {
                    Ok(true) => {}
                    Ok(false) => {
                        if lease.is_lost() {
                            tracing::warn!(backup_id = %lease.id, "another writer took this backup's id over; this writer stops");
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(key = %lease.key, error = %e, "could not refresh a backup's lease")
                    }
                }
            }
        });
        stop
    }
}
