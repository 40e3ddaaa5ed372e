//! Consumer groups' committed offsets, read and written without ever joining a group: what a
//! backup records at its cut, and what restore and migrate commit on a target.
//!
//! Reading uses a client configured with the group's id that never subscribes and only sends
//! OffsetFetch; writing commits with the same kind of client (a "simple" commit, which the
//! broker accepts only while the group has no active members: kvault checks first and refuses
//! an active group rather than racing its consumers).
//!
//! - [`offset_map`]: where copied records landed, source offset to target offset.
//! - [`translation`]: committed source offsets mapped through offset maps and committed on a
//!   target, one outcome per group.

pub(crate) mod offset_map;
pub(crate) mod translation;

use futures::StreamExt;
use kvault_domain::error::DomainResult;
use kvault_domain::groups::GroupSelection;
use kvault_domain::manifest::{ConsumerGroupOffsets, GroupPartitionOffset};
use kvault_domain::DomainError;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset as KOffset, TopicPartitionList};

use crate::admin::{committed_offsets, Admin};
use crate::client::{group_offsets_client, kafka_error, ClusterConfig};

/// Groups whose offsets are read at once when a backup records every group.
const READ_CONCURRENCY: usize = 8;

/// `(partition, committed offset, commit metadata)` of one group on one topic.
pub(crate) type Commits = Vec<(i32, i64, String)>;

/// Every partition of `partitions` where `group` has a committed offset on `topic`. Blocking.
pub(crate) fn read_committed(
    cluster: &ClusterConfig,
    topic: &str,
    group: &str,
    partitions: &[i32],
) -> DomainResult<Commits> {
    let client = group_offsets_client(cluster, group)?;
    let query: Vec<(&str, i32)> = partitions.iter().map(|p| (topic, *p)).collect();
    let found = committed_offsets(&client, group, &query)?;
    Ok(partitions
        .iter()
        .zip(found)
        .filter_map(|(p, c)| c.map(|c| (*p, c.offset, c.metadata)))
        .collect())
}

/// Commits `offsets` for `group` on `topic` synchronously, without joining the group. Blocking.
pub(crate) fn commit_offsets(
    cluster: &ClusterConfig,
    topic: &str,
    group: &str,
    offsets: &[(i32, i64, String)],
) -> DomainResult<()> {
    let client = group_offsets_client(cluster, group)?;
    let mut list = TopicPartitionList::new();
    for (partition, offset, metadata) in offsets {
        let mut elem = list.add_partition(topic, *partition);
        elem.set_offset(KOffset::Offset(*offset))
            .map_err(|e| kafka_error("offset commit request", e))?;
        elem.set_metadata(metadata.as_str());
    }
    client
        .commit(&list, CommitMode::Sync)
        .map_err(|e| kafka_error(format!("commit offsets of group {group} on {topic}"), e))
}

/// The committed offsets on `partitions` of `topic` of the selected groups (every group the
/// cluster lists, for [`GroupSelection::All`]), sorted by group id; groups without a commit
/// there are left out. A group whose offsets cannot be read is named in the warnings and left
/// out; the backup goes on.
pub(crate) async fn record_at_cut(
    admin: &Admin,
    cluster: &ClusterConfig,
    topic: &str,
    partitions: &[i32],
    selection: &GroupSelection,
) -> DomainResult<(Vec<ConsumerGroupOffsets>, Vec<String>)> {
    let groups = match selection {
        GroupSelection::None => return Ok((Vec::new(), Vec::new())),
        GroupSelection::Only(groups) => groups.clone(),
        GroupSelection::All => match admin.list_groups().await {
            Ok(groups) => groups,
            Err(e) => {
                let warning =
                    format!("consumer groups could not be listed ({e}); the backup records none");
                return Ok((Vec::new(), vec![warning]));
            }
        },
    };
    let reads = futures::stream::iter(groups)
        .map(|group| {
            let (cluster, topic, partitions) =
                (cluster.clone(), topic.to_owned(), partitions.to_vec());
            async move {
                let read = tokio::task::spawn_blocking({
                    let group = group.clone();
                    move || read_committed(&cluster, &topic, &group, &partitions)
                })
                .await
                .map_err(|e| DomainError::internal(format!("offset reader failed: {e}")))
                .and_then(|r| r);
                (group, read)
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut recorded = Vec::new();
    let mut warnings = Vec::new();
    for (group_id, read) in reads {
        match read {
            Ok(commits) if commits.is_empty() => {}
            Ok(commits) => recorded.push(ConsumerGroupOffsets {
                group_id,
                partitions: commits
                    .into_iter()
                    .map(|(partition, offset, metadata)| GroupPartitionOffset {
                        partition,
                        offset,
                        metadata,
                    })
                    .collect(),
            }),
            Err(e) => warnings.push(format!(
                "committed offsets of consumer group {group_id} could not be read ({e}); the \
                 backup does not record it"
            )),
        }
    }
    recorded.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok((recorded, warnings))
}
