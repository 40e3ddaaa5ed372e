//! Deleting a backup: one atomic rename to a hidden tombstone (the commit point of a
//! delete), then removal; tombstones of interrupted deletes are swept at open and create.

use super::*;

impl LocalArchiveStore {
    pub(super) fn delete_inner(&self, id: &str) -> Result<()> {
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

    /// Removes the tombstones of interrupted deletes, best effort: a tombstone never blocks
    /// an id or shows up in a listing, so a failure here only delays reclaiming the space.
    pub(super) fn sweep_tombstones(&self) {
        let Ok(entries) = fs::read_dir(&self.base) else {
            return;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !entry.file_name().to_str().is_some_and(is_tombstone) {
                continue;
            }
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                // Another sweep or the delete that made it got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not remove the leftovers of a deleted backup"
                ),
            }
        }
    }
}

/// Whether `name` is exactly what [`tombstone_name`] makes, so the sweep never touches
/// another hidden entry someone keeps in the base directory.
pub(super) fn is_tombstone(name: &str) -> bool {
    let Some((id, nanos)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(TOMBSTONE_MARKER))
    else {
        return false;
    };
    !nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_digit()) && BackupId::parse(id).is_ok()
}

/// The hidden name a backup directory is renamed to while it is deleted: it starts with '.',
/// which no backup id may, so it is never listed and never collides with an id; the time
/// makes repeated deletes of a re-created id distinct.
pub(super) fn tombstone_name(id: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(".{id}{TOMBSTONE_MARKER}{nanos}")
}
