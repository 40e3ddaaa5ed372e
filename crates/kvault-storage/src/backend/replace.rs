//! Replacing a committed backup's manifest in a local directory, atomically: the new bytes go
//! to a temporary file in the backup's directory, fsynced, then renamed over `manifest.json`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Result, StorageError};

/// Serializes replacements within this process, so the compare and the rename of two
/// concurrent re-wraps cannot interleave (replicas sharing one directory are not covered).
static REPLACING: Mutex<()> = Mutex::new(());

/// Replaces `dir/file` with `new` if it still holds `expected`.
pub(super) fn replace_file(
    id: &str,
    dir: &Path,
    file: &str,
    expected: &[u8],
    new: &[u8],
) -> Result<()> {
    let _one = REPLACING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = dir.join(file);
    let current = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::BackupNotFound(id.to_owned()))
        }
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    if current != expected {
        return Err(StorageError::ManifestChanged(id.to_owned()));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(".{file}.{nanos}.tmp"));
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(new).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StorageError::io(&path, e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}
