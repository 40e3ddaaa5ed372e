//! A resumed write attempt in object storage: it takes the id's lease whatever its age (the
//! job system knows the old writer is gone), which fences the old writer (its next refresh
//! fails, it can no longer commit or write), then copies the segments the old writer reported
//! finished into its own attempt folder with server-side copies, checking each copy's size.
//! What it kept is in its own folder, which no other writer touches; the old attempt's folder
//! is removed once the new manifest is in, or by the sweep. A segment that is missing or of
//! another size (the old writer never completed it, or the sweep took it) ends what is kept
//! of that partition: the partition continues from the last segment kept.

use std::sync::Arc;

use object_store::ObjectStoreExt;

use super::io;
use super::layout::is_segment_file;
use super::staging::ObjectStaging;
use super::{Bucket, MANIFEST_FILE};
use crate::backend::{Adopted, Adoption};
use crate::error::{Result, StorageError};

/// Starts attempt after attempt of `id` keeping what `adopt` lists (see the module docs).
pub(super) fn begin_resume(
    shared: &Arc<Bucket>,
    id: &str,
    adopt: &Adoption,
) -> Result<(ObjectStaging, Adopted)> {
    if shared.head(&shared.key(id, MANIFEST_FILE))?.is_some() {
        return Err(StorageError::BackupExists(id.to_owned()));
    }
    let Some((mut staging, old)) = ObjectStaging::claim_forced(shared.clone(), id)? else {
        return Err(StorageError::BackupExists(id.to_owned()));
    };
    if let Some(old) = old.filter(|a| super::layout::is_attempt(a)) {
        staging.retire(old);
    }
    // Partitions side by side (each in offset order): copies are server-side, so the time
    // is the store's, and a store serves several at once.
    let attempt = staging.attempt().to_owned();
    let copied: Vec<(i32, Vec<(String, String)>)> = std::thread::scope(|scope| {
        let tasks: Vec<_> = adopt
            .iter()
            .map(|(partition, files)| {
                let attempt = attempt.as_str();
                scope.spawn(move || {
                    (
                        *partition,
                        adopt_partition(shared, id, attempt, *partition, files),
                    )
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| {
                let panicked =
                    || StorageError::io(id, std::io::Error::other("a copy thread panicked"));
                let (p, kept) = t.join().map_err(|_| panicked())?;
                kept.map(|kept| (p, kept))
            })
            .collect::<Result<_>>()
    })?;
    let mut adopted = Adopted::new();
    for (partition, kept) in copied {
        for (from, _) in &kept {
            staging.retire(from.clone());
        }
        adopted.insert(partition, kept.into_iter().map(|(_, to)| to).collect());
    }
    // Still the id's writer: nobody took the lease while the copies ran.
    staging.confirm()?;
    Ok((staging, adopted))
}

/// Copies the prefix of `files` (one partition's finished segments, in offset order) that is
/// there with the reported sizes into `attempt`'s folder; per segment kept, the attempt folder
/// it came from and its name in `attempt`.
fn adopt_partition(
    shared: &Arc<Bucket>,
    id: &str,
    attempt: &str,
    partition: i32,
    files: &[(String, u64)],
) -> Result<Vec<(String, String)>> {
    let mut kept = Vec::new();
    for (file, size) in files {
        let Some((from, name)) = source_of(file, partition) else {
            break;
        };
        let to = format!("{attempt}/p{partition}/{name}");
        if !copy_checked(shared, id, (file, &to), *size)? {
            break;
        }
        kept.push((from, to));
    }
    Ok(kept)
}

/// The attempt folder and the file name of segment `file` of `partition`, if it is one of
/// kvault's attempt segments (`attempt-{hex}/p{n}/{offset:020}.seg`).
fn source_of(file: &str, partition: i32) -> Option<(String, String)> {
    if !is_segment_file(file) {
        return None;
    }
    let mut parts = file.split('/');
    let (attempt, dir, name) = (parts.next()?, parts.next()?, parts.next()?);
    (super::layout::is_attempt(attempt) && dir == format!("p{partition}"))
        .then(|| (attempt.to_owned(), name.to_owned()))
}

/// Copies `from` to `to` (both relative to backup `id`) on the server; whether the copy is
/// there with `size` bytes. A missing source is `false`, not an error.
fn copy_checked(
    shared: &Arc<Bucket>,
    id: &str,
    (from, to): (&str, &str),
    size: u64,
) -> Result<bool> {
    let (src, dst) = (shared.key(id, from), shared.key(id, to));
    let (s, a, b) = (shared.clone(), src.clone(), dst.clone());
    let copied =
        io::block_on(async move { s.store.copy(&a, &b).await }).map_err(StorageError::Object)?;
    if shared.absent_ok(&src, copied)?.is_none() {
        return Ok(false);
    }
    Ok(shared.head(&dst)?.is_some_and(|meta| meta.size == size))
}
