//! The seams between the archive logic (blocks, segments, manifests, verification) and the
//! place the bytes live. The partition writer and the readers are written once over these
//! traits; the local store implements them with files, and an object store implements them
//! with multipart uploads ([`SegmentSink`]) and ranged GETs ([`SegmentSource`]).
//!
//! The commit protocol every backend keeps: segments are written create-only under the
//! backup's staging area and made durable ([`SegmentSink::finish`]) before the manifest is
//! written; the manifest is written last and create-only; a backup is visible only once its
//! manifest is. Locally the staging area is `{id}.partial/` and "visible" is the rename to
//! `{id}/`; in an object store it is the create-only PUT of `{id}/manifest.json`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where one segment's bytes go while it is written, in order, exactly once.
pub trait SegmentSink: Write + Send {
    /// Makes everything written durable and visible under the segment's name (fsync of a
    /// file; completing a multipart upload). Nothing written is durable before it.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Opens sinks for new segment files of one backup.
pub trait SegmentSinks: Send + Sync {
    /// Starts segment `file` (relative to the backup, e.g. `p0/00000000000000000000.seg`).
    /// Fails if it exists: segments are create-only.
    fn create(&self, file: &str) -> io::Result<Box<dyn SegmentSink>>;
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

/// Segment files under one local directory.
#[derive(Debug, Clone)]
pub struct FileSinks {
    dir: PathBuf,
    buffer: usize,
}

impl FileSinks {
    pub fn new(dir: impl Into<PathBuf>, buffer: usize) -> Self {
        Self {
            dir: dir.into(),
            buffer,
        }
    }
}

impl SegmentSinks for FileSinks {
    fn create(&self, file: &str) -> io::Result<Box<dyn SegmentSink>> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join(file))?;
        Ok(Box::new(FileSink(BufWriter::with_capacity(self.buffer, f))))
    }
}

/// A buffered segment file; durable once fsynced.
struct FileSink(BufWriter<File>);

impl Write for FileSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl SegmentSink for FileSink {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let file = self.0.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

/// A local segment file read by seek + read.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl SegmentSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&mut self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        self.file.seek(SeekFrom::Start(range.start))?;
        (&mut self.file)
            .take(range.end.saturating_sub(range.start))
            .read_to_end(buf)?;
        Ok(())
    }
}
