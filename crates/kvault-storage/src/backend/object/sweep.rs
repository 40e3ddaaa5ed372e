//! The sweep: removes what dead writers, fenced writers and interrupted deletes left under
//! the root, acting only on keys of kvault's layout ([`super::layout`]) and proving for each
//! that it is dead:
//! - a delete marker older than `abandoned_after` is finished ([`removal::finish_delete`]);
//! - whatever a committed manifest names is never removed;
//! - a stale lease is taken over with a conditional PUT before anything of its attempt goes
//!   (a writer that refreshed it since wins, and the id is left alone), then removed: beside
//!   a manifest that is all that goes, the backup stays whole;
//! - the attempt a live lease names is never touched; any other attempt's objects go once
//!   they are all older than `abandoned_after` (a writer that lost its lease can no longer
//!   commit them).
//!
//! Age is judged by the server's clock, never this host's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::io;
use super::layout::Entry;
use super::lease::{is_stale, observe, server_now, take, Lease};
use super::removal::{self, found, list_id, read_manifest, referenced, Found};
use super::Bucket;
use crate::error::{Result, StorageError};

/// kvault's objects under the root, by backup id.
pub(super) fn survey(shared: &Arc<Bucket>) -> Result<BTreeMap<String, Vec<Found>>> {
    let s = shared.clone();
    let metas = io::block_on(async move {
        let stream = s.store.list(Some(&s.root));
        stream.try_collect::<Vec<_>>().await
    })
    .map_err(StorageError::Object)?
    .map_err(|e| shared.error(&shared.root, e))?;
    let mut by_id: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for f in metas.into_iter().filter_map(|m| found(shared, m)) {
        by_id.entry(f.id.clone()).or_default().push(f);
    }
    Ok(by_id)
}

/// Sweeps every id under the root; how many ids had remains removed.
pub(super) fn sweep(shared: &Arc<Bucket>) -> usize {
    let survey = match survey(shared) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the bucket to sweep abandoned backups");
            return 0;
        }
    };
    let survey: Vec<_> = survey.into_iter().filter(|(_, o)| !is_clean(o)).collect();
    if survey.is_empty() {
        return 0;
    }
    let now = match server_now(shared) {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the object store's clock; no sweep");
            return 0;
        }
    };
    survey
        .into_iter()
        .filter(|(id, objects)| match sweep_id(shared, id, objects.clone(), Some(now)) {
            Ok(removed) => removed,
            Err(e) => {
                tracing::warn!(backup_id = %id, error = %e, "could not sweep an abandoned backup");
                false
            }
        })
        .count()
}

/// Removes what is left of unfinished backup `id` whatever its lease's age: its writer is
/// fenced off by taking the lease first. What a committed manifest names stays.
pub(super) fn discard(shared: &Arc<Bucket>, id: &str) -> Result<()> {
    sweep_id(shared, id, list_id(shared, id, "")?, None).map(|_| ())
}

/// A committed backup written by one attempt, with nothing else: nothing to do, without
/// reading its manifest.
fn is_clean(objects: &[Found]) -> bool {
    let mut attempts = BTreeSet::new();
    let mut manifest = false;
    for f in objects {
        match &f.entry {
            Entry::Manifest => manifest = true,
            Entry::Segment(attempt) => {
                attempts.insert(attempt.clone());
            }
            _ => return false,
        }
    }
    manifest && attempts.len() <= 1
}

/// Sweeps one id; `now` is the server's time, `None` to treat everything as stale (a
/// discard). Whether anything was removed.
fn sweep_id(
    shared: &Arc<Bucket>,
    id: &str,
    mut objects: Vec<Found>,
    now: Option<DateTime<Utc>>,
) -> Result<bool> {
    let stale = |at: DateTime<Utc>| now.is_none_or(|now| is_stale(shared, at, now));
    let mut removed = false;
    // Deletes in progress first: they decide whether the manifest stays.
    let markers: Vec<Found> = objects
        .iter()
        .filter(|f| f.entry == Entry::DeleteMarker && stale(f.modified))
        .cloned()
        .collect();
    for marker in &markers {
        removal::finish_delete(shared, id, &marker.key)?;
        removed = true;
    }
    if removed {
        objects = list_id(shared, id, "")?;
    }
    let mut keep = BTreeSet::new();
    if objects.iter().any(|f| f.entry == Entry::Manifest) {
        if let Some((bytes, _)) = read_manifest(shared, id)? {
            let Some(named) = referenced(&bytes) else {
                tracing::warn!(backup_id = %id, "the manifest cannot be read; nothing under its id is swept");
                return Ok(removed);
            };
            keep = named;
        }
    }
    // The lease: the attempt of a live one is spared; a stale one is taken first, fencing
    // its writer, and then its attempt's objects go whatever their age.
    let (mut live, mut dead, mut taken) = (None, None, None);
    if objects.iter().any(|f| f.entry == Entry::Lease) {
        match judge_lease(shared, id, &stale, now.is_none())? {
            Holder::Nobody => {}
            Holder::Live(attempt) => live = Some(attempt),
            Holder::Dead(lease, attempt) => (taken, dead) = (Some(lease), Some(attempt)),
            // Refreshed or taken over since the listing: not this sweep's to judge.
            Holder::Changed => return Ok(removed),
        }
    }
    let mut attempts: BTreeMap<Option<String>, Vec<Found>> = BTreeMap::new();
    for f in objects {
        if let Entry::Segment(a) | Entry::UploadMarker(a) = &f.entry {
            attempts.entry(a.clone()).or_default().push(f);
        }
    }
    for (attempt, group) in &attempts {
        if live.as_ref() == Some(attempt) {
            continue;
        }
        let doomed: Vec<Found> = group
            .iter()
            .filter(|f| !keep.contains(&f.rel))
            .cloned()
            .collect();
        let dead_now = dead.as_ref() == Some(attempt) || group.iter().all(|f| stale(f.modified));
        if !doomed.is_empty() && dead_now {
            removal::remove(shared, id, &doomed)?;
            removed = true;
        }
    }
    let present: BTreeSet<&String> = attempts.values().flatten().map(|f| &f.rel).collect();
    if keep.iter().any(|f| !present.contains(f)) {
        tracing::warn!(backup_id = %id, "the manifest names segments that are not in the bucket; verify the backup");
    }
    if let Some(lease) = taken {
        lease.release()?;
        removed = true;
    }
    Ok(removed)
}

/// Who holds an id's lease, as judged by a sweep.
enum Holder {
    Nobody,
    /// A live writer, of this attempt (`None`: a writer of the layout without attempts).
    Live(Option<String>),
    /// A dead writer of this attempt, fenced off: the lease is now the sweep's.
    Dead(Arc<Lease>, Option<String>),
    /// The lease changed between the look and the takeover.
    Changed,
}

/// Judges `id`'s lease and takes a stale one over. With `force` (a discard) any lease is
/// stale, and a lease its writer refreshes meanwhile is tried again.
fn judge_lease(
    shared: &Arc<Bucket>,
    id: &str,
    stale: &dyn Fn(DateTime<Utc>) -> bool,
    force: bool,
) -> Result<Holder> {
    for _ in 0..3 {
        let Some(lease) = observe(shared, id)? else {
            return Ok(Holder::Nobody);
        };
        if !stale(lease.modified) {
            return Ok(Holder::Live(lease.attempt));
        }
        let Some(etag) = lease.etag.as_deref() else {
            return Ok(Holder::Changed);
        };
        if let Some(held) = take(shared, id, etag)? {
            return Ok(Holder::Dead(held, lease.attempt));
        }
        if !force {
            return Ok(Holder::Changed);
        }
    }
    Ok(Holder::Changed)
}
