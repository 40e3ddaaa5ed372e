//! Incremental backups and their chains. A backup made with `incremental_from: PARENT` starts
//! each partition where the parent ended (new partitions from their start), so the chain
//! root → … → latest covers the topic without gap or overlap. Restoring any link restores the
//! whole chain up to it, as one restore (optionally only up to an instant: point-in-time).
//!
//! Chains are pruned from the oldest end only: a link whose parent still exists is never
//! deleted by retention (see [`deletable_by_retention`]), so what remains is always a chain
//! that starts later, never one with a hole.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{DomainError, DomainResult, ValidationError};
use crate::ids::{BackupId, ClusterId};
use crate::manifest::{ChainLink, Manifest, PartitionManifest};
use crate::ports::ArchiveStore;

/// Where an incremental backup of `parent` starts each partition, and the link it records.
/// The parent must be a backup of the same cluster and topic.
pub fn continue_chain(
    parent: &Manifest,
    cluster_id: &ClusterId,
    topic: &str,
) -> Result<(ChainLink, BTreeMap<i32, i64>), ValidationError> {
    if parent.cluster_id != cluster_id.as_str() || parent.topic.name != topic {
        return Err(ValidationError::new(
            "incremental_from",
            &parent.backup_id,
            format!(
                "is a backup of {}/{}, not of {cluster_id}/{topic}",
                parent.cluster_id, parent.topic.name
            ),
        ));
    }
    let link = ChainLink {
        parent_id: parent.backup_id.clone(),
        root_id: parent
            .chain
            .as_ref()
            .map_or_else(|| parent.backup_id.clone(), |c| c.root_id.clone()),
        sequence: parent.chain.as_ref().map_or(1, |c| c.sequence + 1),
        parent_uid: parent.archive_uid.clone(),
        root_uid: parent.root_uid().map(str::to_owned),
        cluster_id: Some(cluster_id.to_string()),
        topic: Some(topic.to_owned()),
    };
    let starts = parent
        .partitions
        .iter()
        .map(|p| (p.partition, p.end_offset))
        .collect();
    Ok((link, starts))
}

/// Where a backup of `topic` on `cluster_id` starts when it continues `parent` (`None`: a full
/// backup): the link it records and each partition's start. Both engines call this.
pub async fn continue_from(
    store: &dyn ArchiveStore,
    parent: Option<&BackupId>,
    cluster_id: &ClusterId,
    topic: &str,
) -> DomainResult<(Option<ChainLink>, BTreeMap<i32, i64>)> {
    let Some(parent) = parent else {
        return Ok((None, BTreeMap::new()));
    };
    let parent = store.manifest(parent).await?;
    let (link, starts) = continue_chain(&parent, cluster_id, topic)?;
    Ok((Some(link), starts))
}

/// Whether `parent` is the very archive `child`'s link names: the uid the child recorded
/// (an archive without a uid only for a link that recorded none), the same cluster and topic
/// as the child, and the same chain root.
pub fn parent_mismatch(child: &Manifest, parent: &Manifest) -> Option<String> {
    let link = child.chain.as_ref()?;
    if link.parent_uid != parent.archive_uid {
        return Some(format!(
            "its archive uid is {} but {} recorded parent uid {}",
            parent.archive_uid.as_deref().unwrap_or("(none)"),
            child.backup_id,
            link.parent_uid.as_deref().unwrap_or("(none)")
        ));
    }
    let (cluster, topic) = (
        link.cluster_id.as_deref().unwrap_or(&child.cluster_id),
        link.topic.as_deref().unwrap_or(&child.topic.name),
    );
    if parent.cluster_id != child.cluster_id
        || parent.topic.name != child.topic.name
        || parent.cluster_id != cluster
        || parent.topic.name != topic
    {
        return Some(format!(
            "it is a backup of {}/{}, the chain is of {}/{}",
            parent.cluster_id, parent.topic.name, child.cluster_id, child.topic.name
        ));
    }
    if link.root_uid.is_some() && link.root_uid.as_deref() != parent.root_uid() {
        return Some(format!(
            "its chain root uid is {}, {} recorded {}",
            parent.root_uid().unwrap_or("(none)"),
            child.backup_id,
            link.root_uid.as_deref().unwrap_or("(none)")
        ));
    }
    None
}

/// The chain that ends at `last`, root first: its parents followed while they exist (a parent
/// deleted by retention ends the walk: the chain then starts later). At most `max_links`.
/// A parent that is not the archive its child's link names (another archive created under a
/// reused id, another cluster or topic) is refused with `Conflict`, never followed: every link
/// is of the last link's cluster and topic.
pub async fn load_chain(
    store: &dyn ArchiveStore,
    last: Manifest,
    max_links: usize,
) -> DomainResult<Vec<Manifest>> {
    let mut chain = vec![last];
    let mut seen = BTreeSet::new();
    while let Some(parent_id) = chain
        .last()
        .and_then(|m| m.chain.as_ref())
        .map(|c| c.parent_id.clone())
    {
        if chain.len() >= max_links || !seen.insert(parent_id.clone()) {
            return Err(DomainError::internal(format!(
                "the chain of {} is longer than {max_links} links or loops",
                chain[0].backup_id
            )));
        }
        let parent = match store.manifest(&BackupId::parse(&parent_id)?).await {
            Ok(parent) => parent,
            Err(DomainError::NotFound { .. }) => break,
            Err(e) => return Err(e),
        };
        let child = chain.last().expect("the chain has its last link");
        if let Some(why) = parent_mismatch(child, &parent) {
            return Err(DomainError::conflict_on(
                format!(
                    "backup {parent_id} is not the parent that {} continues ({why}): it was \
                     created under a reused id after the parent was deleted; the chain of {} \
                     is refused rather than restored with another backup's records",
                    child.backup_id, chain[0].backup_id
                ),
                "backup_id",
                &chain[0].backup_id,
            ));
        }
        chain.push(parent);
    }
    chain.reverse();
    Ok(chain)
}

/// Continuity problems between consecutive links: per partition, a link must start exactly
/// where its parent ended (a gap loses records, an overlap repeats them).
pub fn chain_problems(chain: &[Manifest]) -> Vec<String> {
    let mut problems = Vec::new();
    for pair in chain.windows(2) {
        let (parent, child) = (&pair[0], &pair[1]);
        for p in &child.partitions {
            let Some(before) = parent.partition(p.partition) else {
                continue; // a partition added after the parent: it starts at its log start
            };
            if p.start_offset > before.end_offset {
                problems.push(format!(
                    "gap in the chain: {} ends partition {} at offset {}, {} starts it at {} \
                     (offsets {}..{} are in no link; retention removed them before the \
                     incremental backup ran)",
                    parent.backup_id,
                    p.partition,
                    before.end_offset,
                    child.backup_id,
                    p.start_offset,
                    before.end_offset,
                    p.start_offset
                ));
            } else if p.start_offset < before.end_offset {
                problems.push(format!(
                    "overlap in the chain: {} ends partition {} at offset {}, {} starts it at {}",
                    parent.backup_id,
                    p.partition,
                    before.end_offset,
                    child.backup_id,
                    p.start_offset
                ));
            }
        }
    }
    problems
}

/// One manifest describing the whole chain, for planning a restore of it: each partition's
/// range runs from its first link's start to its last link's end, counts are summed, and it
/// is contiguous only when every link is and each starts where its parent ended. The consumer
/// groups are those of the last link finished at or before `groups_as_of` (ms; the last link
/// when `None`). Segments are listed link after link, for planning (their timestamp ranges);
/// records are still read link by link, each from its own archive.
/// An empty chain is an error, not a panic.
pub fn merge_chain(chain: &[Manifest], groups_as_of: Option<i64>) -> DomainResult<Manifest> {
    let Some(last) = chain.last() else {
        return Err(DomainError::internal(
            "an empty chain has nothing to restore",
        ));
    };
    let mut merged = last.clone();
    let mut partitions: BTreeMap<i32, PartitionManifest> = BTreeMap::new();
    for link in chain {
        for p in &link.partitions {
            match partitions.get_mut(&p.partition) {
                None => {
                    partitions.insert(p.partition, p.clone());
                }
                Some(acc) => {
                    acc.contiguous =
                        acc.contiguous && p.contiguous && p.start_offset == acc.end_offset;
                    acc.end_offset = p.end_offset;
                    acc.first_offset = acc.first_offset.or(p.first_offset);
                    acc.last_offset = p.last_offset.or(acc.last_offset);
                    acc.message_count += p.message_count;
                    acc.raw_bytes += p.raw_bytes;
                    acc.compressed_bytes += p.compressed_bytes;
                    acc.segments.extend(p.segments.iter().cloned());
                }
            }
        }
    }
    merged.partitions = partitions.into_values().collect();
    merged.created_at = chain[0].created_at;
    if let Some(as_of) = groups_as_of {
        merged.consumer_groups = chain
            .iter()
            .rev()
            .find(|link| link.finished_at.timestamp_millis() <= as_of)
            .map(|link| link.consumer_groups.clone())
            .unwrap_or_default();
    }
    Ok(merged)
}

/// The uids of the archives that exist, by backup id (`None`: an archive without a uid).
pub type ExistingArchives = BTreeMap<String, Option<String>>;

/// Whether the parent `link` names is among `existing`: the same id and the same uid.
fn parent_exists(link: &ChainLink, existing: &ExistingArchives) -> bool {
    existing.get(&link.parent_id) == Some(&link.parent_uid)
}

/// Whether retention may delete `backup` (already expired): only when it starts its chain,
/// i.e. its parent no longer exists, so chains shrink from the oldest end and never get a hole.
/// An archive created later under the parent's id is not its parent.
pub fn deletable_by_retention(backup: &Manifest, existing: &ExistingArchives) -> bool {
    backup
        .chain
        .as_ref()
        .is_none_or(|c| !parent_exists(c, existing))
}

/// The parent of `m` among `by_id`, if the archive of that id is the one its link names.
fn parent_in<'a>(m: &Manifest, by_id: &BTreeMap<&str, &'a Manifest>) -> Option<&'a Manifest> {
    let link = m.chain.as_ref()?;
    let parent = by_id.get(link.parent_id.as_str()).copied()?;
    parent_mismatch(m, parent).is_none().then_some(parent)
}

/// The ids of the backups `used` picks plus every earlier link of their chains: a job reading
/// a chain's last link (a restore of it) reads all of them, so retention must keep them all.
pub fn with_earlier_links(all: &[Manifest], used: impl Fn(&Manifest) -> bool) -> BTreeSet<String> {
    let by_id: BTreeMap<&str, &Manifest> = all.iter().map(|m| (m.backup_id.as_str(), m)).collect();
    let mut kept = BTreeSet::new();
    for backup in all.iter().filter(|m| used(m)) {
        let mut link = Some(backup);
        // A link already kept was walked from already (this also ends a loop).
        while let Some(current) = link.filter(|m| kept.insert(m.backup_id.clone())) {
            link = parent_in(current, &by_id);
        }
    }
    kept
}

/// Adds the chain's continuity problems to a verify report of its last link.
pub fn add_chain_problems(report: &mut crate::ports::VerifyReport, chain: &[Manifest]) {
    let problems = chain_problems(chain);
    if !problems.is_empty() {
        report.valid = false;
        report.problems.extend(problems);
    }
}

/// The longest chain a verify follows.
pub const MAX_CHAIN_LINKS: usize = 10_000;

/// The body of `POST /backups/{id}/verify` (and `kvault verify`'s output): every checksum and
/// count of backup `id` (manifest `m`) checked, and for an incremental backup its chain's
/// continuity too. Progress goes to `control`, with the manifest's message count as total.
pub async fn verify_report(
    store: &dyn ArchiveStore,
    id: &BackupId,
    m: Manifest,
    control: &crate::job::OperationControl,
) -> DomainResult<crate::ports::VerifyReport> {
    control.set_total(m.total_messages());
    let mut report = store.verify(id, control).await?;
    if m.chain.is_some() {
        // An incremental backup is only as good as its chain's continuity.
        let chain = load_chain(store, m, MAX_CHAIN_LINKS).await?;
        add_chain_problems(&mut report, &chain);
    }
    Ok(report)
}

/// Why deleting `backup` by hand would cut its chain in two (a parent still exists and a
/// later link depends on it), or `None` when it may go. Links are matched by uid, so an
/// archive under a reused id is neither parent nor child.
pub fn middle_link_conflict(backup: &Manifest, all: &[Manifest]) -> Option<String> {
    let by_id: BTreeMap<&str, &Manifest> = all.iter().map(|m| (m.backup_id.as_str(), m)).collect();
    let parent_exists = parent_in(backup, &by_id).is_some();
    let child = all.iter().find(|m| {
        m.chain.as_ref().is_some_and(|c| {
            c.parent_id == backup.backup_id && parent_mismatch(m, backup).is_none()
        })
    })?;
    parent_exists.then(|| {
        format!(
            "backup {} is a link in the middle of a chain (its parent exists and {} continues \
             it): deleting it would leave a hole; delete the chain from its oldest link, or its \
             newest",
            backup.backup_id, child.backup_id
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: &str, parent: Option<&str>, parts: &[(i32, i64, i64)], finished: &str) -> Manifest {
        let partitions: Vec<serde_json::Value> = parts
            .iter()
            .map(|(p, start, end)| {
                serde_json::json!({"partition": p, "start_offset": start, "end_offset": end,
                    "first_offset": (end > start).then_some(*start),
                    "last_offset": (end > start).then_some(end - 1),
                    "message_count": end - start, "raw_bytes": 1, "compressed_bytes": 1,
                    "contiguous": true, "segments": []})
            })
            .collect();
        let chain = parent.map(|p| {
            serde_json::json!({"parent_id": p, "root_id": "a", "sequence": 1,
                "parent_uid": format!("uid-{p}"), "root_uid": "uid-a"})
        });
        serde_json::from_value(serde_json::json!({
            "format_version": 1, "backup_id": id, "archive_uid": format!("uid-{id}"),
            "cluster_id": "c",
            "topic": {"name": "t", "partition_count": 2, "replication_factor": 1},
            "compression": {"codec": "none"}, "include_keys": true, "include_headers": true,
            "created_at": "2026-01-01T00:00:00Z", "finished_at": finished,
            "partitions": partitions, "chain": chain,
            "consumer_groups": [{"group_id": id, "partitions": []}],
        }))
        .unwrap()
    }

    #[test]
    fn a_child_starts_where_its_parent_ended() {
        let root = link("a", None, &[(0, 0, 10), (1, 0, 4)], "2026-01-01T00:01:00Z");
        let (next, starts) = continue_chain(&root, &ClusterId::parse("c").unwrap(), "t").unwrap();
        assert_eq!(
            (
                next.parent_id.as_str(),
                next.root_id.as_str(),
                next.sequence
            ),
            ("a", "a", 1)
        );
        assert_eq!(starts, BTreeMap::from([(0, 10), (1, 4)]));
        assert_eq!(
            continue_chain(&root, &ClusterId::parse("c").unwrap(), "other")
                .unwrap_err()
                .field,
            "incremental_from"
        );
    }

    #[test]
    fn continuity_gaps_and_overlaps_are_named() {
        let a = link("a", None, &[(0, 0, 10), (1, 0, 4)], "2026-01-01T00:01:00Z");
        let b = link(
            "b",
            Some("a"),
            &[(0, 10, 15), (1, 6, 8)],
            "2026-01-01T00:02:00Z",
        );
        let c = link(
            "c",
            Some("b"),
            &[(0, 14, 20), (1, 8, 8), (2, 0, 3)],
            "2026-01-01T00:03:00Z",
        );
        let problems = chain_problems(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("gap") && problems[0].contains("partition 1"));
        assert!(problems[1].starts_with("overlap") && problems[1].contains("partition 0"));
        assert!(chain_problems(&[
            a.clone(),
            link(
                "b",
                Some("a"),
                &[(0, 10, 11), (1, 4, 5)],
                "2026-01-01T00:02:00Z"
            )
        ])
        .is_empty());
    }

    #[test]
    fn a_merged_chain_spans_every_link_and_takes_the_groups_as_of_an_instant() {
        let a = link("a", None, &[(0, 0, 10)], "2026-01-01T00:01:00Z");
        let b = link(
            "b",
            Some("a"),
            &[(0, 10, 15), (1, 0, 2)],
            "2026-01-01T00:02:00Z",
        );
        let merged = merge_chain(&[a.clone(), b.clone()], None).unwrap();
        let p0 = merged.partition(0).unwrap();
        assert_eq!(
            (p0.start_offset, p0.end_offset, p0.message_count),
            (0, 15, 15)
        );
        assert!(p0.contiguous);
        assert_eq!(merged.partition(1).unwrap().end_offset, 2);
        assert_eq!(merged.consumer_groups[0].group_id, "b");
        let as_of_a = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:30Z").unwrap();
        let early = merge_chain(&[a, b], Some(as_of_a.timestamp_millis())).unwrap();
        assert_eq!(early.consumer_groups[0].group_id, "a");
    }

    #[test]
    fn chains_shrink_from_the_oldest_end_only() {
        let a = link("a", None, &[(0, 0, 10)], "2026-01-01T00:01:00Z");
        let b = link("b", Some("a"), &[(0, 10, 15)], "2026-01-01T00:02:00Z");
        let c = link("c", Some("b"), &[(0, 15, 20)], "2026-01-01T00:03:00Z");
        let all = vec![a.clone(), b.clone(), c.clone()];
        let existing: ExistingArchives = all
            .iter()
            .map(|m| (m.backup_id.clone(), m.archive_uid.clone()))
            .collect();
        assert!(deletable_by_retention(&a, &existing));
        assert!(!deletable_by_retention(&b, &existing));
        assert!(middle_link_conflict(&b, &all).is_some());
        assert!(middle_link_conflict(&a, &all).is_none());
        assert!(middle_link_conflict(&c, &all).is_none());
        // A job reading c (a restore of the chain) keeps a and b too; one reading b keeps a.
        let kept = |id: &str| with_earlier_links(&all, |m| m.backup_id == id);
        assert_eq!(kept("c").len(), 3);
        assert_eq!(kept("b"), BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert_eq!(kept("a"), BTreeSet::from(["a".to_owned()]));
        assert!(kept("none").is_empty());
    }

    #[test]
    fn an_empty_chain_is_an_error_not_a_panic() {
        assert!(merge_chain(&[], None).is_err());
    }

    #[test]
    fn an_archive_under_a_reused_parent_id_is_not_the_parent() {
        let a = link("a", None, &[(0, 0, 10)], "2026-01-01T00:01:00Z");
        let b = link("b", Some("a"), &[(0, 10, 15)], "2026-01-01T00:02:00Z");
        let (next, _) = continue_chain(&b, &ClusterId::parse("c").unwrap(), "t").unwrap();
        assert_eq!(
            (next.parent_uid.as_deref(), next.root_uid.as_deref()),
            (Some("uid-b"), Some("uid-a"))
        );
        assert_eq!(parent_mismatch(&b, &a), None);
        let mut impostor = a.clone();
        impostor.archive_uid = Some("uid-other".into());
        assert!(parent_mismatch(&b, &impostor)
            .unwrap()
            .contains("uid-other"));
        let mut legacy = a.clone();
        legacy.archive_uid = None;
        assert!(
            parent_mismatch(&b, &legacy).is_some(),
            "a uid-less archive is never linked by uid"
        );
        let mut elsewhere = a.clone();
        elsewhere.cluster_id = "other".into();
        assert!(parent_mismatch(&b, &elsewhere).unwrap().contains("other/t"));
        // Retention and manual deletes see the impostor as no parent at all.
        let all = vec![impostor.clone(), b.clone()];
        let existing: ExistingArchives = all
            .iter()
            .map(|m| (m.backup_id.clone(), m.archive_uid.clone()))
            .collect();
        assert!(deletable_by_retention(&b, &existing));
        assert_eq!(with_earlier_links(&all, |m| m.backup_id == "b").len(), 1);
        assert!(middle_link_conflict(&impostor, &all).is_none());
    }
}
