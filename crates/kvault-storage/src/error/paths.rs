//! Naming a file by its place inside a backup, so messages never show where the archive
//! root lives.

use std::path::Path;

/// `path` from the component naming the backup (`{id}`, `{id}.partial`, a tombstone) on,
/// or `None` when no component names it.
pub(super) fn path_inside_backup(path: &Path, backup_id: &str) -> Option<String> {
    if backup_id.is_empty() {
        return None;
    }
    let parts: Vec<_> = path.iter().map(|c| c.to_string_lossy()).collect();
    let start = parts.iter().rposition(|c| {
        c.as_ref() == backup_id
            || c.strip_suffix(crate::format::PARTIAL_SUFFIX) == Some(backup_id)
            || (c.starts_with('.') && c.contains(backup_id))
    })?;
    Some(parts[start..].join("/"))
}
