//! Staging directories of unfinished backups (`{id}.partial/`) and how a live one is told
//! from one whose writer died.
//!
//! The writer holds an exclusive advisory lock on `{id}.partial/.lock` for its whole life.
//! The operating system drops the lock when the holder exits, however it exits (kill -9
//! included), so "the lock can be taken" means "nobody is writing this partial any more".
//! Such an abandoned partial is removed when its id is created again, when a store opens,
//! and by [`sweep_abandoned`], which the API calls periodically. A live partial is never
//! touched.
//!
//! A backup taken over from a writer that died resumes in its partial ([`resume`]): the new
//! writer takes the lock (it can only if the old one is gone), keeps the finished segments the
//! old one reported, and removes everything else.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fs4::fs_std::FileExt;
use kvault_domain::BackupId;

use crate::format::MANIFEST_FILE;

/// Name of the lock file inside a partial directory.
pub(crate) const LOCK_FILE: &str = ".lock";

/// A partial without a lock file is only abandoned once this old: its writer may be between
/// `mkdir` and taking the lock, or between dropping the lock file and the commit rename.
const LOCKLESS_GRACE: Duration = Duration::from_secs(120);

/// The lock a live writer keeps on its partial; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct PartialLock {
    _file: File,
}

impl PartialLock {
    /// Takes the lock of the freshly created partial `dir`.
    pub(crate) fn acquire(dir: &Path) -> io::Result<Self> {
        let file = open_lock_file(dir)?;
        if !file.try_lock_exclusive()? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the lock of a partial this writer just created is held elsewhere",
            ));
        }
        Ok(Self { _file: file })
    }

    /// Whether the locked file is still `dir`'s lock file. A racing create of the same id may
    /// have taken the lock file for abandoned (between this writer's `mkdir` and its lock) and
    /// removed the directory; then this writer lost the race.
    pub(crate) fn still_in(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self._file.metadata(), fs::metadata(dir.join(LOCK_FILE))) {
            (Ok(held), Ok(there)) => held.ino() == there.ino() && held.dev() == there.dev(),
            _ => false,
        }
    }
}

fn open_lock_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
}

/// Whether the partial `dir` has no live writer; `Some` holds the probe's lock (if there was
/// a lock file) so no one can start using the directory while it is removed. Errors other
/// than "no lock file" count as live: when in doubt, a partial is kept.
fn claim_abandoned(dir: &Path) -> Option<Option<File>> {
    match File::options().write(true).open(dir.join(LOCK_FILE)) {
        Ok(file) => file
            .try_lock_exclusive()
            .unwrap_or(false)
            .then_some(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            older_than(dir, LOCKLESS_GRACE).then_some(None)
        }
        Err(_) => None,
    }
}

fn older_than(dir: &Path, age: Duration) -> bool {
    fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|elapsed| elapsed >= age)
}

/// Whether `dir` holds only what a writer puts in a partial: the lock file, the manifest and
/// `p{n}/` directories of `{offset:020}.seg` files. Anything else means the directory is not
/// (only) kvault's, and it is left alone whatever its name says.
fn holds_only_kvaults_files(dir: &Path) -> bool {
    let names = |dir: &Path| -> Option<Vec<(String, bool)>> {
        fs::read_dir(dir)
            .ok()?
            .map(|e| {
                let e = e.ok()?;
                Some((
                    e.file_name().into_string().ok()?,
                    e.file_type().ok()?.is_dir(),
                ))
            })
            .collect()
    };
    let is_segment = |n: &str| {
        n.strip_suffix(".seg")
            .is_some_and(|o| o.len() == 20 && o.bytes().all(|b| b.is_ascii_digit()))
    };
    let is_partition = |n: &str| {
        n.strip_prefix('p')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let Some(top) = names(dir) else {
        return false;
    };
    top.iter()
        .all(|(name, is_dir)| match (name.as_str(), is_dir) {
            (LOCK_FILE | MANIFEST_FILE, false) => true,
            (p, true) if is_partition(p) => names(&dir.join(p))
                .is_some_and(|files| files.iter().all(|(f, d)| !d && is_segment(f))),
            _ => false,
        })
}

/// Removes the partial `dir` if it is abandoned and holds only kvault's files; returns
/// whether it is gone.
pub(crate) fn remove_if_abandoned(dir: &Path) -> bool {
    if !holds_only_kvaults_files(dir) {
        tracing::warn!(path = %dir.display(), "a staging directory holds files kvault does not write; left alone");
        return false;
    }
    // Held until the directory is gone, so a concurrent create of the same id cannot have
    // its fresh partial removed by this sweep.
    let Some(_probe) = claim_abandoned(dir) else {
        return false;
    };
    match fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove an abandoned partial backup");
            false
        }
    }
}

/// Removes every abandoned `{backup id}.partial` directory under `base`; returns how many
/// went. A name that is no backup id plus the suffix is not kvault's and is never touched.
pub(crate) fn sweep_abandoned(base: &Path, suffix: &str) -> usize {
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let is_partial_name = |name: &str| {
        name.strip_suffix(suffix)
            .is_some_and(|id| BackupId::parse(id).is_ok())
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_str().is_some_and(is_partial_name))
        .filter(|e| remove_if_abandoned(&e.path()))
        .count()
}

/// Takes over the abandoned partial `dir` for a writer that resumes it: takes its lock
/// (`None` when a live writer holds it), keeps per partition the prefix of `adopt` whose files
/// are there with the reported sizes, and removes every other file kvault wrote there (a
/// segment the old writer had not finished, a manifest of a commit it did not complete).
pub(crate) fn resume(
    dir: &Path,
    adopt: &super::Adoption,
) -> io::Result<Option<(PartialLock, super::Adopted)>> {
    if !holds_only_kvaults_files(dir) {
        return Ok(None);
    }
    let file = open_lock_file(dir)?;
    if !file.try_lock_exclusive()? {
        return Ok(None);
    }
    let lock = PartialLock { _file: file };
    if !lock.still_in(dir) {
        return Ok(None);
    }
    let mut kept = super::Adopted::new();
    let mut keep = std::collections::HashSet::new();
    for (partition, files) in adopt {
        let names: Vec<String> = files
            .iter()
            .take_while(|(file, size)| {
                crate::format::is_safe_relative(file)
                    && file.starts_with(&format!("p{partition}/"))
                    && fs::metadata(dir.join(file)).is_ok_and(|m| m.is_file() && m.len() == *size)
            })
            .map(|(file, _)| file.clone())
            .collect();
        keep.extend(names.iter().cloned());
        kept.insert(*partition, names);
    }
    let _ = fs::remove_file(dir.join(MANIFEST_FILE));
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for segment in fs::read_dir(entry.path())?.flatten() {
            let rel = format!("{name}/{}", segment.file_name().to_string_lossy());
            if !keep.contains(&rel) {
                fs::remove_file(segment.path())?;
            }
        }
        File::open(entry.path())?.sync_all()?;
    }
    Ok(Some((lock, kept)))
}
