//! Segment bytes to and from object storage: a segment goes up part by part as a multipart
//! upload while it is written (one part buffered, so memory stays at one part per open
//! segment), or as one PUT when it never fills a part; it comes back by ranged GETs.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;

use object_store::multipart::PartId;
use object_store::path::Path as Key;
use object_store::{MultipartId, ObjectStoreExt, PutPayload, PutPayloadMut};

use super::io::{self as object_io, ObjectError};
use super::layout::UPLOADS;
use super::lease::{Lease, LOST};
use super::Bucket;
use crate::backend::{SegmentSink, SegmentSinks, SegmentSource};
use crate::error::{Result, StorageError};

/// Runs `f` against the store on the I/O runtime; failures become `io::Error`s carrying the
/// [`ObjectError`], which the store's error mapping unwraps again.
fn call<T: Send + 'static, F>(
    shared: &Arc<Bucket>,
    key: &Key,
    f: impl FnOnce(Arc<Bucket>) -> F + Send + 'static,
) -> io::Result<T>
where
    F: std::future::Future<Output = object_store::Result<T>> + Send + 'static,
{
    let s = shared.clone();
    let outcome = object_io::block_on(async move { f(s).await }).map_err(io::Error::other)?;
    outcome.map_err(|e| {
        let e = ObjectError::new(shared.describe(key), e);
        let kind = if e.is_not_found() {
            io::ErrorKind::NotFound
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, e)
    })
}

/// Aborts the upload of `target` that `marker` names (what a killed writer left open).
pub(super) fn abort_marked_upload(shared: &Arc<Bucket>, marker: &Key, target: &Key) -> Result<()> {
    let upload = match call(shared, marker, {
        let m = marker.clone();
        move |s| async move { s.store.get(&m).await?.bytes().await }
    }) {
        Ok(body) => String::from_utf8_lossy(&body).trim().to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(shared.describe(marker), e)),
    };
    let aborted = call(shared, target, {
        let t = target.clone();
        move |s| async move { s.multipart.abort_multipart(&t, &upload).await }
    });
    match aborted {
        Ok(()) => Ok(()),
        // Already completed or aborted.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(shared.describe(target), e)),
    }
}

/// An empty part buffer.
fn part_buffer() -> PutPayloadMut {
    PutPayloadMut::new().with_block_size(256 << 10)
}

/// Sinks for the segments of one partition of one write attempt of one backup.
pub(super) struct ObjectSinks {
    shared: Arc<Bucket>,
    id: String,
    attempt: String,
    partition_dir: String,
    lease: Arc<Lease>,
}

impl ObjectSinks {
    pub(super) fn new(
        shared: Arc<Bucket>,
        id: &str,
        attempt: &str,
        partition_dir: &str,
        lease: Arc<Lease>,
    ) -> Self {
        Self {
            shared,
            id: id.to_owned(),
            attempt: attempt.to_owned(),
            partition_dir: partition_dir.to_owned(),
            lease,
        }
    }
}

/// The error of a write by a writer that lost its lease.
fn fenced() -> io::Error {
    io::Error::other(LOST)
}

impl SegmentSinks for ObjectSinks {
    fn create(&self, file: &str) -> io::Result<Box<dyn SegmentSink>> {
        if self.lease.is_lost() {
            return Err(fenced());
        }
        let (attempt, dir) = (&self.attempt, &self.partition_dir);
        Ok(Box::new(ObjectSink {
            key: self
                .shared
                .key(&self.id, &format!("{attempt}/{dir}/{file}")),
            marker: self
                .shared
                .key(&self.id, &format!("{attempt}/{UPLOADS}/{dir}~{file}")),
            lease: self.lease.clone(),
            shared: self.shared.clone(),
            buf: part_buffer(),
            upload: None,
            parts: Vec::new(),
            done: false,
        }))
    }
}

/// One segment on its way up.
struct ObjectSink {
    shared: Arc<Bucket>,
    lease: Arc<Lease>,
    key: Key,
    marker: Key,
    /// The part being filled, in 256 KiB chunks: no part-sized allocation, which glibc would
    /// keep per thread arena after the part is sent.
    buf: PutPayloadMut,
    upload: Option<MultipartId>,
    parts: Vec<PartId>,
    done: bool,
}

impl ObjectSink {
    /// Sends the buffered bytes as the next part, starting the upload on the first.
    fn send_part(&mut self) -> io::Result<()> {
        if self.lease.is_lost() {
            return Err(fenced());
        }
        let upload = match &self.upload {
            Some(id) => id.clone(),
            None => {
                let key = self.key.clone();
                let id = call(&self.shared, &self.key, move |s| async move {
                    s.multipart.create_multipart(&key).await
                })?;
                // Recorded before any part, so a sweep can abort it if this process dies.
                let (marker, body) = (self.marker.clone(), PutPayload::from(id.clone()));
                call(&self.shared, &self.marker, move |s| async move {
                    s.store.put(&marker, body).await
                })?;
                self.upload = Some(id.clone());
                id
            }
        };
        let part = std::mem::replace(&mut self.buf, part_buffer()).freeze();
        let (key, index) = (self.key.clone(), self.parts.len());
        let id = call(&self.shared, &self.key, move |s| async move {
            s.multipart.put_part(&key, &upload, index, part).await
        })?;
        self.parts.push(id);
        Ok(())
    }
}

impl Write for ObjectSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.shared.part_size - self.buf.content_length();
        let n = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.content_length() >= self.shared.part_size {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SegmentSink for ObjectSink {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        if self.lease.is_lost() {
            return Err(fenced());
        }
        let Some(upload) = self.upload.clone() else {
            // Never filled a part: one PUT.
            let body = std::mem::replace(&mut self.buf, part_buffer()).freeze();
            let key = self.key.clone();
            call(&self.shared, &self.key, move |s| async move {
                s.store.put(&key, body).await
            })?;
            self.done = true;
            return Ok(());
        };
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let (key, parts) = (self.key.clone(), std::mem::take(&mut self.parts));
        call(&self.shared, &self.key, move |s| async move {
            s.multipart.complete_multipart(&key, &upload, parts).await
        })?;
        self.done = true;
        let marker = self.marker.clone();
        // A marker left behind names a completed upload; aborting that later is harmless.
        let _ = call(&self.shared, &self.marker, move |s| async move {
            s.store.delete(&marker).await
        });
        Ok(())
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(upload) = self.upload.take() {
            let key = self.key.clone();
            if let Err(e) = call(&self.shared, &self.key, move |s| async move {
                s.multipart.abort_multipart(&key, &upload).await
            }) {
                tracing::warn!(key = %self.key, error = %e, "could not abort an upload; the sweep will");
            }
        }
    }
}

/// A stored segment read by ranged GETs.
pub(super) struct ObjectSource {
    shared: Arc<Bucket>,
    key: Key,
    len: u64,
}

impl ObjectSource {
    pub(super) fn new(shared: Arc<Bucket>, key: Key, len: u64) -> Self {
        Self { shared, key, len }
    }
}

impl SegmentSource for ObjectSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&mut self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        let range = range.start.min(self.len)..range.end.min(self.len);
        if range.is_empty() {
            return Ok(());
        }
        let key = self.key.clone();
        let bytes = call(&self.shared, &self.key, move |s| async move {
            s.store.get_range(&key, range).await
        })?;
        buf.extend_from_slice(&bytes);
        Ok(())
    }
}
