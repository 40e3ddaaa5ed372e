//! [`LocalBackend`]: backups as directories on a local filesystem. A backup is written under
//! `{id}.partial/` (held by an advisory lock while its writer lives) and renamed to `{id}/`
//! once every file is durable; a delete renames it to a hidden tombstone first.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::durable::FileSinks;
use super::durable::Unsynced;
use super::partial::{self, PartialLock, LOCK_FILE};
use super::tombstone::{is_tombstone, tombstone_name};
use super::{Adopted, Adoption, Backend, SegmentSinks, SegmentSource, Staging};
use crate::error::{Result, StorageError};

pub(crate) use crate::format::MANIFEST_FILE;
pub use crate::format::PARTIAL_SUFFIX;

/// Buffer of a segment file writer and the read window of a segment file reader.
pub(crate) const IO_BUFFER: usize = 256 << 10;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Backups under one local directory: `{base}/{id}/manifest.json` and
/// `{base}/{id}/p{partition}/{first_offset:020}.seg`.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    base: PathBuf,
}

impl LocalBackend {
    /// A backend at `base`, created if missing. Sweeps what interrupted deletes and dead
    /// writers left.
    pub fn open(base: impl Into<PathBuf>) -> Result<Self> {
        let base = base.into();
        fs::create_dir_all(&base).map_err(io_err(&base))?;
        let backend = Self { base };
        backend.sweep_tombstones();
        backend.sweep_partials();
        Ok(backend)
    }

    pub fn base_path(&self) -> &Path {
        &self.base
    }

    pub(crate) fn final_dir(&self, id: &str) -> PathBuf {
        self.base.join(id)
    }

    fn partial_dir(&self, id: &str) -> PathBuf {
        self.base.join(format!("{id}{PARTIAL_SUFFIX}"))
    }

    fn sweep_partials(&self) -> usize {
        partial::sweep_abandoned(&self.base, PARTIAL_SUFFIX)
    }

    /// Removes the tombstones of interrupted deletes, best effort: a tombstone never blocks
    /// an id or shows up in a listing, so a failure here only delays reclaiming the space.
    fn sweep_tombstones(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.base) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !entry.file_name().to_str().is_some_and(is_tombstone) {
                continue;
            }
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => removed += 1,
                // Another sweep or the delete that made it got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not remove the leftovers of a deleted backup"
                ),
            }
        }
        removed
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        format!("file://{}", self.base.display())
    }

    fn begin(&self, id: &str) -> Result<Box<dyn Staging>> {
        self.sweep_tombstones();
        let final_dir = self.final_dir(id);
        if final_dir.exists() {
            return Err(StorageError::BackupExists(id.to_owned()));
        }
        let dir = self.partial_dir(id);
        // An abandoned partial of this id (its writer was killed) must not block the id.
        if dir.exists() {
            partial::remove_if_abandoned(&dir);
        }
        // `create_dir` (not `_all`) fails if the directory exists, which makes two racing
        // creates of one id resolve to exactly one winner.
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::BackupExists(id.to_owned()))
            }
            Err(e) => return Err(StorageError::io(&dir, e)),
        }
        let lock = match PartialLock::acquire(&dir) {
            Ok(lock) if lock.still_in(&dir) => lock,
            // A racing create of this id took the directory (see `PartialLock::still_in`):
            // it is that writer's now, so it is left alone.
            Ok(_) => return Err(StorageError::BackupExists(id.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(StorageError::BackupExists(id.to_owned()))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(StorageError::io(dir.join(LOCK_FILE), e));
            }
        };
        Ok(Box::new(LocalStaging {
            id: id.to_owned(),
            lock: Some(lock),
            dir,
            base: self.base.clone(),
            final_dir,
            unsynced: Arc::default(),
            done: false,
        }))
    }

    fn read_manifest(&self, id: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.final_dir(id).join(MANIFEST_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        Ok(Some(bytes))
    }

    fn list_committed(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.base).map_err(io_err(&self.base))? {
            let entry = entry.map_err(io_err(&self.base))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.ends_with(PARTIAL_SUFFIX) && entry.path().join(MANIFEST_FILE).is_file() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open_segment(&self, id: &str, file: &str) -> Result<Box<dyn SegmentSource>> {
        let path = self.final_dir(id).join(file);
        let source = FileSource::open(&path).map_err(io_err(&path))?;
        Ok(Box::new(source))
    }

    fn read_window(&self) -> usize {
        IO_BUFFER
    }

    fn replace_manifest(&self, id: &str, expected: &[u8], new: &[u8]) -> Result<()> {
        let dir = self.final_dir(id);
        super::replace::replace_file(id, &dir, MANIFEST_FILE, expected, new)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let dir = self.final_dir(id);
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(StorageError::BackupNotFound(id.to_owned()));
        }
        // Renaming to a hidden tombstone is the commit point: one atomic step makes the
        // backup invisible and frees its id. A crash before it leaves the backup whole; a
        // crash after it leaves a tombstone that the next open or create sweeps away.
        let tombstone = self.base.join(tombstone_name(id));
        match fs::rename(&dir, &tombstone) {
            Ok(()) => {}
            // A concurrent delete of the same id won the rename.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::BackupNotFound(id.to_owned()))
            }
            Err(e) => return Err(StorageError::io(&dir, e)),
        }
        sync_dir(&self.base)?;
        // The backup is gone as far as anyone can see; failing to reclaim the space now is
        // not a failed delete, the tombstone is swept later.
        if let Err(e) = fs::remove_dir_all(&tombstone) {
            if tombstone.exists() {
                tracing::warn!(
                    path = %tombstone.display(),
                    error = %e,
                    "backup deleted but its files could not be removed yet; swept on next open"
                );
            }
        }
        Ok(())
    }

    fn sweep_abandoned(&self) -> usize {
        self.sweep_tombstones() + self.sweep_partials()
    }

    fn begin_resume(&self, id: &str, adopt: &Adoption) -> Result<(Box<dyn Staging>, Adopted)> {
        let (dir, final_dir) = (self.partial_dir(id), self.final_dir(id));
        if final_dir.exists() {
            return Err(StorageError::BackupExists(id.to_owned()));
        }
        if !dir.exists() {
            return Ok((self.begin(id)?, Adopted::new()));
        }
        // Only once the dead writer's lock is this writer's are its segments kept.
        let Some((lock, adopted)) = partial::resume(&dir, adopt).map_err(io_err(&dir))? else {
            return Err(StorageError::BackupExists(id.to_owned()));
        };
        let staging = LocalStaging {
            id: id.to_owned(),
            lock: Some(lock),
            dir,
            base: self.base.clone(),
            final_dir,
            unsynced: Arc::default(),
            done: false,
        };
        Ok((Box::new(staging), adopted))
    }
}

/// A backup being written under `{id}.partial/`.
struct LocalStaging {
    id: String,
    /// Held until commit or abort: tells sweeps this partial is alive.
    lock: Option<PartialLock>,
    dir: PathBuf,
    base: PathBuf,
    final_dir: PathBuf,
    /// Last segments and partition directories whose fsync waits for the commit.
    unsynced: Arc<Unsynced>,
    /// Set once committed or aborted, so `Drop` leaves the result alone.
    done: bool,
}

impl Staging for LocalStaging {
    fn sinks(&self, partition_dir: &str) -> Result<Box<dyn SegmentSinks>> {
        let dir = self.dir.join(partition_dir);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Box::new(FileSinks::deferred(
            dir,
            IO_BUFFER,
            self.unsynced.clone(),
        )))
    }

    fn segment_size(&self, file: &str) -> Result<Option<u64>> {
        Ok(fs::metadata(self.dir.join(file)).map(|m| m.len()).ok())
    }

    fn commit(&mut self, manifest: &[u8]) -> Result<()> {
        self.unsynced.sync_all().map_err(io_err(&self.dir))?;
        let path = self.dir.join(MANIFEST_FILE);
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(manifest)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        if self.final_dir.exists() {
            return Err(StorageError::BackupExists(self.id.clone()));
        }
        // The lock file is not part of a backup. Removing it leaves the partial briefly
        // lockless; sweeps give lockless partials a grace period, so this stays safe.
        let lock_file = self.dir.join(LOCK_FILE);
        fs::remove_file(&lock_file).map_err(io_err(&lock_file))?;
        fs::rename(&self.dir, &self.final_dir).map_err(io_err(&self.dir))?;
        self.lock = None;
        self.done = true;
        sync_dir(&self.base)
    }

    fn abort(&mut self) -> Result<()> {
        self.done = true;
        let removed = fs::remove_dir_all(&self.dir);
        self.lock = None;
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&self.dir, e)),
        }
    }
}

impl Drop for LocalStaging {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.abort() {
                tracing::warn!(error = %e, "could not remove an abandoned partial backup");
            }
        }
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
