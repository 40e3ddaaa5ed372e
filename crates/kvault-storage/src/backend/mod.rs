//! The seams between the archive logic (blocks, segments, manifests, verification) and the
//! place the bytes live. The store ([`crate::Store`]) is written once over [`Backend`]; the
//! local backend ([`local`]) keeps backups as directories, the object backend ([`object`]) as
//! objects in S3-compatible storage through the `object_store` crate.
//!
//! The commit protocol every backend keeps: segments are written create-only under the
//! backup's staging area and made durable ([`SegmentSink::finish`]) before the manifest is
//! written; the manifest is written last and create-only; a backup is visible only once its
//! manifest is. Locally the staging area is `{id}.partial/` and "visible" is the rename to
//! `{id}/`; in an object store it is the create-only PUT of `{id}/manifest.json`.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;

use crate::error::Result;

mod durable;
pub mod local;
pub mod object;
mod partial;
mod replace;
pub(crate) mod tombstone;

/// Where a store's backups live: staging, the commit point, listing, reading and deleting.
/// Every method blocks; the store calls them from blocking threads.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Where the backups are, for messages and `kvault show`: `file:///srv/backups` or
    /// `s3://bucket/prefix`. Never holds a credential.
    fn location(&self) -> String;

    /// Starts writing backup `id`. Fails with `BackupExists` if a backup of that id is
    /// committed or being written by a live writer; the remains of a dead writer of the same
    /// id are cleared first.
    fn begin(&self, id: &str) -> Result<Box<dyn Staging>>;

    /// The manifest bytes of committed backup `id`, or `None` if there is none. Reads at most
    /// `limit + 1` bytes, so the caller can refuse an oversized manifest without holding it.
    fn read_manifest(&self, id: &str, limit: u64) -> Result<Option<Vec<u8>>>;

    /// The names under the root that have a manifest (not validated as backup ids).
    fn list_committed(&self) -> Result<Vec<String>>;

    /// [`Self::list_committed`], each with a tag that changes whenever its manifest is
    /// written again (an object's ETag), so a reader may keep what it parsed while the tag
    /// holds. `None`: no such tag, the manifest is read again at every listing.
    fn list_manifests(&self) -> Result<Vec<(String, Option<String>)>> {
        Ok(self
            .list_committed()?
            .into_iter()
            .map(|id| (id, None))
            .collect())
    }

    /// Opens segment `file` (relative to the backup) of committed backup `id`. A missing
    /// segment is an `io::ErrorKind::NotFound` inside `StorageError::Io`.
    fn open_segment(&self, id: &str, file: &str) -> Result<Box<dyn SegmentSource>>;

    /// Bytes a segment reader fetches per read: a buffer locally, one ranged GET remotely.
    fn read_window(&self) -> usize;

    /// Deletes committed backup `id`: the manifest goes first (the commit point of a delete),
    /// then the rest. `BackupNotFound` if there is none.
    fn delete(&self, id: &str) -> Result<()>;

    /// Replaces committed backup `id`'s manifest with `new`, only if it still is `expected`
    /// (`ManifestChanged` otherwise): how a key record changes (re-wrap, crypto-shred)
    /// without touching segments. Atomic: a reader sees the old manifest or the new one.
    fn replace_manifest(&self, id: &str, expected: &[u8], new: &[u8]) -> Result<()>;

    /// Removes what dead writers and interrupted deletes left behind, never anything a live
    /// writer is using; returns how many backups' remains it removed.
    fn sweep_abandoned(&self) -> usize;

    /// Removes the remains of unfinished backup `id` whatever its writer's lease says (the
    /// caller knows the writer is gone); a committed backup is left alone.
    fn discard_unfinished(&self, id: &str) -> Result<()> {
        let _ = id;
        Ok(())
    }

    /// Starts writing backup `id` again after its writer stopped (the caller knows it is gone,
    /// as for [`Backend::discard_unfinished`]), keeping the segments that writer finished.
    /// `adopt` lists per partition, in offset order, the finished segments' files (relative
    /// to the backup) and sizes, as that writer reported them. The new writer is fenced from
    /// the old one before anything is kept; what is kept per partition is a prefix of its
    /// list (a segment that is missing or of another size ends it), returned with the names
    /// the segments have in the new staging. Everything else the old writer left goes.
    /// `BackupExists` when the id is committed or a live writer holds it.
    fn begin_resume(&self, id: &str, adopt: &Adoption) -> Result<(Box<dyn Staging>, Adopted)> {
        let _ = adopt;
        self.discard_unfinished(id)?;
        Ok((self.begin(id)?, Adopted::new()))
    }
}

/// Segments a resumed writer is asked to keep: per partition, `(file, size)` in offset order.
pub type Adoption = std::collections::BTreeMap<i32, Vec<(String, u64)>>;
/// Segments a resumed writer kept: per partition, their files in the new staging (a prefix of
/// what was asked).
pub type Adopted = std::collections::BTreeMap<i32, Vec<String>>;

/// One backup being written: its segment sinks, then exactly one of commit or abort.
pub trait Staging: Send + Sync {
    /// The directory, relative to the backup, that the segments of partition directory
    /// `partition_dir` (`p0`) go to and the manifest names them under: `p0` locally, the
    /// write attempt's own folder in an object store (`attempt-{hex}/p0`), so no other
    /// attempt's writer can touch them.
    fn segment_dir(&self, partition_dir: &str) -> String {
        partition_dir.to_owned()
    }

    /// Sinks for the segments of one segment directory (what [`Staging::segment_dir`] gave).
    fn sinks(&self, partition_dir: &str) -> Result<Box<dyn SegmentSinks>>;

    /// The size of finished segment `file`, or `None` if it was never written.
    fn segment_size(&self, file: &str) -> Result<Option<u64>>;

    /// When object storage retention will release this backup, if the backend locks what it
    /// commits (S3 Object Lock): asked once before the manifest is made, which records it;
    /// the commit then locks every object until that instant. `None` by default.
    fn retain_until(&mut self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// Writes `manifest` create-only and makes the backup visible. `BackupExists` if another
    /// writer committed the same id first.
    fn commit(&mut self, manifest: &[u8]) -> Result<()>;

    /// Removes everything this backup wrote. Also what dropping an uncommitted staging does.
    fn abort(&mut self) -> Result<()>;
}

/// Where one segment's bytes go while it is written, in order, exactly once.
pub trait SegmentSink: Write + Send {
    /// Makes everything written durable and visible under the segment's name (fsync of a
    /// file; completing a multipart upload). Nothing written is durable before it.
    fn finish(self: Box<Self>) -> io::Result<()>;

    /// Finishes the last segment of a partition. A backend may leave making it durable to the
    /// commit, which then makes all of them durable at once before the manifest is written
    /// (nothing reads such a segment before the commit: a resumed backup keeps only segments
    /// closed earlier). Defaults to [`SegmentSink::finish`].
    fn finish_last(self: Box<Self>) -> io::Result<()> {
        self.finish()
    }
}

/// Opens sinks for new segment files of one backup.
pub trait SegmentSinks: Send + Sync {
    /// Starts segment `file` (relative to the backup, e.g. `p0/00000000000000000000.seg`).
    /// Fails if it exists: segments are create-only.
    fn create(&self, file: &str) -> io::Result<Box<dyn SegmentSink>>;

    /// Makes the set of finished segments durable (a directory fsync locally), or has the
    /// commit do it with the last segments (see [`SegmentSink::finish_last`]).
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Random access to one stored segment: a ranged read per call (seek + read of a file; a
/// ranged GET of an object).
pub trait SegmentSource: Send {
    /// Size of the segment in bytes.
    fn len(&self) -> u64;
    /// Whether the segment is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Replaces `buf` with the bytes in `range`; short only at the end of the segment.
    fn read_range(&mut self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()>;
}

impl SegmentSource for Box<dyn SegmentSource> {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_range(&mut self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        (**self).read_range(range, buf)
    }
}

/// A [`Read`] over a [`SegmentSource`], fetching `window` bytes per ranged read, so the
/// streaming segment reader runs unchanged over any backend.
pub struct SourceReader<S: SegmentSource> {
    source: S,
    window: u64,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<S: SegmentSource> SourceReader<S> {
    pub fn new(source: S, window: usize) -> Self {
        Self {
            source,
            window: window.max(1) as u64,
            pos: 0,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl<S: SegmentSource> Read for SourceReader<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            let end = (self.pos + self.window).min(self.source.len());
            if self.pos >= end {
                return Ok(0);
            }
            self.source.read_range(self.pos..end, &mut self.buf)?;
            self.pos += self.buf.len() as u64;
            self.at = 0;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
