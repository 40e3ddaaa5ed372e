//! Names of deleted backups' remains: a delete renames the backup directory to a hidden
//! tombstone (the commit point of a delete) and then removes it; tombstones of interrupted
//! deletes are swept at open and create.

use kvault_domain::BackupId;

/// Marks a hidden directory as the remains of a delete: `.{id}.deleting-{nanos}`.
const TOMBSTONE_MARKER: &str = ".deleting-";

/// Whether `name` is exactly what [`tombstone_name`] makes, so the sweep never touches
/// another hidden entry someone keeps in the base directory.
pub(crate) fn is_tombstone(name: &str) -> bool {
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
pub(crate) fn tombstone_name(id: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(".{id}{TOMBSTONE_MARKER}{nanos}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_names_are_recognised_exactly() {
        let name = tombstone_name("backup-1.x");
        assert!(name.starts_with(".backup-1.x.deleting-"), "{name}");
        assert!(is_tombstone(&name));
        for other in [
            ".deleting-1",
            ".b.deleting-",
            ".b.deleting-1a",
            "b.deleting-1",
            "..",
        ] {
            assert!(!is_tombstone(other), "{other}");
        }
    }
}
