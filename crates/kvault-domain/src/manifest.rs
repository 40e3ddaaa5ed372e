//! What a finished backup contains. Storage persists it as `manifest.json`; restore plans from
//! it (partition count, configs, segment offset and timestamp ranges) without reading segments.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compression::Compression;

/// The archive format version this build writes for an unencrypted archive.
pub const FORMAT_VERSION: u32 = 1;
/// The version of an encrypted archive (its manifest carries [`ArchiveEncryption`], its
/// segments are sealed). Readers accept versions up to this one; a reader that knows only
/// version 1 refuses an encrypted archive instead of misreading it.
pub const ENCRYPTED_FORMAT_VERSION: u32 = 2;

/// Topic metadata captured at backup time, used to recreate the topic on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub partition_count: i32,
    pub replication_factor: i16,
    /// Topic-level configs as the admin API reports them (cleanup.policy, retention.ms, ...).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// One segment file of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// File name relative to the backup directory, e.g. `p0/00000000000000000000.seg`.
    pub file: String,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    pub size_bytes: u64,
    pub block_count: u64,
    pub message_count: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Payload bytes before compression.
    pub raw_bytes: u64,
}

/// One partition of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub partition: i32,
    /// The range the backup covered, `[start_offset, end_offset)`: the resolved start and the cut.
    pub start_offset: i64,
    pub end_offset: i64,
    /// Offsets of the first and last record written (absent when the partition is empty).
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub message_count: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// True when the offsets of the written records are `start_offset, start_offset+1, ...`
    /// with no gap (compaction and transaction markers leave gaps).
    pub contiguous: bool,
    pub segments: Vec<SegmentInfo>,
}

/// One consumer group's committed position on one partition, at the backup's cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupPartitionOffset {
    pub partition: i32,
    /// The committed offset: the next record the group would read.
    pub offset: i64,
    /// The metadata string committed with it (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
}

/// A consumer group's committed offsets on the backed-up topic, read when the backup took its
/// cut (only partitions where the group had committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumerGroupOffsets {
    pub group_id: String,
    pub partitions: Vec<GroupPartitionOffset>,
}

/// The backup set an archive belongs to: one call that backed up several topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupSetRef {
    pub set_id: String,
    /// The set's immutable uid, the same in every member: two sets that were given the same
    /// `set_id` never mix. Absent in sets written before kvault recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_uid: Option<String>,
    /// How many topics (archives) the set has: a restore of the set refuses one with fewer.
    pub topic_count: u32,
}

/// The link an incremental backup forms in its chain (see `crate::chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainLink {
    /// The backup this one continues: each partition starts where the parent's ended.
    pub parent_id: String,
    /// The chain's first backup (a full one).
    pub root_id: String,
    /// 1 for the first incremental backup after the root, and so on.
    pub sequence: u32,
    /// The parent's `archive_uid`: the parent is the archive named `parent_id` only when its
    /// uid is this one (absent in links written before kvault recorded uids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,
    /// The root's `archive_uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_uid: Option<String>,
    /// The cluster and topic every link of the chain backs up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// How an encrypted archive's data key is kept: wrapped (encrypted) by a key-encryption key
/// named by id, which the store's key provider holds. `docs/archive-format.md` gives the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEncryption {
    /// The cipher suite of blocks and key wrap: `aes-256-gcm`.
    pub scheme: String,
    /// The key-encryption key that wrapped the data key.
    pub key_id: String,
    /// The data key wrapped by `key_id` (base64); absent once the archive was crypto-shredded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
    /// When the wrapped key was destroyed: the archive can no longer be read by anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shredded_at: Option<DateTime<Utc>>,
}

/// The manifest of a finished backup. Its presence is what makes a backup directory a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: String,
    /// The archive's immutable unique id, written once when it is created. References between
    /// archives (chain links) and from jobs name it, so an archive created later under a
    /// reused `backup_id` is never mistaken for this one. Absent in archives written before
    /// kvault recorded it: those cannot be linked to by uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_uid: Option<String>,
    pub cluster_id: String,
    pub topic: TopicMetadata,
    pub compression: Compression,
    pub include_keys: bool,
    pub include_headers: bool,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub partitions: Vec<PartitionManifest>,
    /// Consumer groups' committed offsets on the topic at the cut, sorted by group id. Absent
    /// in manifests written before kvault recorded groups, and when none were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<ConsumerGroupOffsets>,
    /// The set this archive belongs to (absent for a single-topic backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_set: Option<BackupSetRef>,
    /// Present on an incremental backup: its place in the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// Present on an encrypted archive: the wrapped data key and the key that wrapped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ArchiveEncryption>,
    /// When object storage retention (S3 Object Lock) releases the archive: until then its
    /// objects, this manifest among them, can be neither deleted nor overwritten, and kvault
    /// refuses to delete it. Absent where no lock was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_until: Option<DateTime<Utc>>,
}

impl Manifest {
    pub fn total_messages(&self) -> u64 {
        self.partitions.iter().map(|p| p.message_count).sum()
    }

    pub fn total_raw_bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.raw_bytes).sum()
    }

    pub fn total_compressed_bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.compressed_bytes).sum()
    }

    pub fn consumer_group(&self, group: &str) -> Option<&ConsumerGroupOffsets> {
        self.consumer_groups.iter().find(|g| g.group_id == group)
    }

    /// The uid of the chain this archive belongs to: its root's (its own when it is a root).
    pub fn root_uid(&self) -> Option<&str> {
        match &self.chain {
            Some(link) => link.root_uid.as_deref(),
            None => self.archive_uid.as_deref(),
        }
    }

    /// The uid of the set this archive belongs to, if it belongs to one that recorded it.
    pub fn set_uid(&self) -> Option<&str> {
        self.backup_set.as_ref().and_then(|s| s.set_uid.as_deref())
    }

    /// Whether retention still locks the archive at `now`.
    pub fn is_locked_at(&self, now: DateTime<Utc>) -> bool {
        self.immutable_until.is_some_and(|until| until > now)
    }

    pub fn partition(&self, partition: i32) -> Option<&PartitionManifest> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}
