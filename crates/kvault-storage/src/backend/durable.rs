//! Local segment files, and the fsyncs that wait for the commit. The last segment of each
//! partition and the partition directories are made durable together just before the
//! manifest is written, by fsyncs side by side, which ext4's journal commits together: one
//! after the other (two per partition, each a journal commit) they cost ~5-7 ms a partition,
//! most of a wide backup's time. A segment closed because it is full is still made durable
//! when it closes: a resumed backup may keep it (see `partial::resume`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{SegmentSink, SegmentSinks};

/// The most fsyncs the commit runs side by side.
const SYNC_THREADS: usize = 32;

/// Files and directories of one backup written but not yet fsynced.
#[derive(Debug, Default)]
pub(crate) struct Unsynced(Mutex<Vec<PathBuf>>);

impl Unsynced {
    fn push(&self, path: PathBuf) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path);
    }

    /// Fsyncs everything noted so far, up to [`SYNC_THREADS`] at a time; the first error is
    /// returned once all are done.
    pub(crate) fn sync_all(&self) -> io::Result<()> {
        let paths = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        let next = AtomicUsize::new(0);
        let sync_some = || -> io::Result<()> {
            let mut first_error = None;
            while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                if let Err(e) = File::open(path).and_then(|f| f.sync_all()) {
                    first_error.get_or_insert(io::Error::new(
                        e.kind(),
                        format!("fsync {}: {e}", path.display()),
                    ));
                }
            }
            first_error.map_or(Ok(()), Err)
        };
        let threads = paths.len().min(SYNC_THREADS);
        if threads <= 1 {
            return sync_some();
        }
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(sync_some)).collect();
            // Every thread is joined before the first error is reported.
            let outcomes: Vec<io::Result<()>> = workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(io::Error::other("fsync thread failed")))
                })
                .collect();
            outcomes.into_iter().collect::<io::Result<()>>()
        })
    }
}

/// Segment files under one local directory.
#[derive(Debug, Clone)]
pub struct FileSinks {
    dir: PathBuf,
    buffer: usize,
    /// Where the fsyncs left to the commit are noted; `None`: every fsync happens at once.
    unsynced: Option<Arc<Unsynced>>,
}

impl FileSinks {
    pub fn new(dir: impl Into<PathBuf>, buffer: usize) -> Self {
        Self {
            dir: dir.into(),
            buffer,
            unsynced: None,
        }
    }

    /// Sinks whose last segments and directory are fsynced by the commit (through `unsynced`).
    pub(crate) fn deferred(dir: PathBuf, buffer: usize, unsynced: Arc<Unsynced>) -> Self {
        Self {
            dir,
            buffer,
            unsynced: Some(unsynced),
        }
    }
}

impl SegmentSinks for FileSinks {
    fn create(&self, file: &str) -> io::Result<Box<dyn SegmentSink>> {
        let path = self.dir.join(file);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Box::new(FileSink {
            out: BufWriter::with_capacity(self.buffer, f),
            path,
            unsynced: self.unsynced.clone(),
        }))
    }

    fn sync(&self) -> io::Result<()> {
        match &self.unsynced {
            Some(unsynced) => {
                unsynced.push(self.dir.clone());
                Ok(())
            }
            None => File::open(&self.dir).and_then(|d| d.sync_all()),
        }
    }
}

/// A buffered segment file; durable once fsynced.
struct FileSink {
    out: BufWriter<File>,
    path: PathBuf,
    unsynced: Option<Arc<Unsynced>>,
}

impl Write for FileSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.out.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl SegmentSink for FileSink {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }

    fn finish_last(self: Box<Self>) -> io::Result<()> {
        let Some(unsynced) = self.unsynced.clone() else {
            return self.finish();
        };
        // Written to the kernel now; the commit fsyncs it.
        self.out.into_inner().map_err(|e| e.into_error())?;
        unsynced.push(self.path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_segments_are_fsynced_by_the_commit_and_a_missing_one_fails_it() {
        let dir = tempfile::tempdir().unwrap();
        let unsynced = Arc::new(Unsynced::default());
        let sinks = FileSinks::deferred(dir.path().to_path_buf(), 1024, unsynced.clone());
        for name in ["a.seg", "b.seg"] {
            let mut sink = sinks.create(name).unwrap();
            sink.write_all(b"bytes").unwrap();
            sink.finish_last().unwrap();
        }
        sinks.sync().unwrap();
        // Two segments and their directory wait for the commit, written but not fsynced.
        assert_eq!(unsynced.0.lock().unwrap().len(), 3);
        assert_eq!(std::fs::read(dir.path().join("a.seg")).unwrap(), b"bytes");
        unsynced.sync_all().unwrap();
        assert!(
            unsynced.0.lock().unwrap().is_empty(),
            "each is fsynced once"
        );

        let mut sink = sinks.create("c.seg").unwrap();
        sink.write_all(b"bytes").unwrap();
        sink.finish_last().unwrap();
        std::fs::remove_file(dir.path().join("c.seg")).unwrap();
        let err = unsynced.sync_all().unwrap_err();
        assert!(err.to_string().contains("c.seg"), "{err}");
    }
}
