//! The flags of `kvault backup` and `kvault restore` (single topics and backup sets, consumer
//! groups), named like the API's JSON fields.

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use kvault_domain::groups::{ConsumerGroupsMode, GroupChoice};
use kvault_domain::restore::IfExists;
use kvault_domain::{CompressionType, Offset};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Cluster id from the `clusters:` config section (or the name of the `-b` cluster).
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
    /// The topic to back up (or `--topics` / `--topic-pattern` for a backup set).
    #[arg(long, required_unless_present_any = ["topics", "topic_pattern"], default_value = "")]
    pub topic: String,
    /// Back up these topics as one set (comma-separated), each into its own archive.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["topic", "topic_pattern"])]
    pub topics: Option<Vec<String>>,
    /// Back up every topic whose whole name matches this regular expression, as one set.
    #[arg(long, alias = "topic_pattern", conflicts_with = "topic")]
    pub topic_pattern: Option<String>,
    #[arg(long, value_parser = parse_compression)]
    pub compression: Option<CompressionType>,
    #[arg(long, alias = "compression_level")]
    pub compression_level: Option<i32>,
    #[arg(long, alias = "max_messages")]
    pub max_messages: Option<u64>,
    /// "earliest", "latest" or an offset.
    #[arg(long, alias = "start_offset", default_value = "earliest")]
    pub start_offset: Offset,
    /// "latest" or an offset (exclusive).
    #[arg(long, alias = "end_offset", default_value = "latest")]
    pub end_offset: Offset,
    /// Comma-separated partition numbers (default: all).
    #[arg(long, value_delimiter = ',')]
    pub partitions: Option<Vec<i32>>,
    #[arg(long, alias = "include_headers", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_headers: bool,
    #[arg(long, alias = "include_keys", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_keys: bool,
    #[arg(long, alias = "rate_limit_per_second")]
    pub rate_limit_per_second: Option<u32>,
    /// RFC 3339 instant: only records at or after it.
    #[arg(long, alias = "start_time", value_parser = super::parse_time)]
    pub start_time: Option<DateTime<Utc>>,
    /// RFC 3339 instant: only records before it.
    #[arg(long, alias = "end_time", value_parser = super::parse_time)]
    pub end_time: Option<DateTime<Utc>>,
    /// Name the backup (default: generated).
    #[arg(long, alias = "backup_id")]
    pub backup_id: Option<String>,
    /// Record consumer groups' committed offsets on the topic at the cut.
    #[arg(long, alias = "include_consumer_groups", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_consumer_groups: bool,
    /// Only these groups (comma-separated; default: every group with a commit on the topic).
    #[arg(long, alias = "consumer_groups", value_delimiter = ',')]
    pub consumer_groups: Option<Vec<String>>,
    /// An incremental backup continuing this backup of the topic (each partition starts where
    /// it ended).
    #[arg(long, alias = "incremental_from")]
    pub incremental_from: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Target cluster id (default: the cluster the backup was taken from).
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
    #[arg(
        long,
        alias = "backup_id",
        required_unless_present = "schedule_id",
        default_value = ""
    )]
    pub backup_id: String,
    /// Instead of --backup-id: restore a backup schedule's chain up to its newest completed run
    /// (read from the configured database).
    #[arg(long, alias = "schedule_id", conflicts_with = "backup_id")]
    pub schedule_id: Option<String>,
    /// The topic to restore into (left out for a backup set: each topic keeps its name, or
    /// see --topic-prefix / --topic-mapping).
    #[arg(long, alias = "target_topic", default_value = "")]
    pub target_topic: String,
    #[arg(long, alias = "target_partitions")]
    pub target_partitions: Option<i32>,
    #[arg(long, alias = "replication_factor")]
    pub replication_factor: Option<i16>,
    #[arg(long, alias = "preserve_offsets")]
    pub preserve_offsets: bool,
    #[arg(long, alias = "rate_limit_per_second")]
    pub rate_limit_per_second: Option<u32>,
    #[arg(long, alias = "validate_checksum", default_value_t = true, action = clap::ArgAction::Set)]
    pub validate_checksum: bool,
    #[arg(long, alias = "if_exists", value_enum, default_value_t = IfExistsArg::Fail)]
    pub if_exists: IfExistsArg,
    /// Comma-separated source partitions to restore (default: all).
    #[arg(long, value_delimiter = ',')]
    pub partitions: Option<Vec<i32>>,
    /// RFC 3339 instant: restore only records at or before it.
    #[arg(long, alias = "until_time", value_parser = super::parse_time)]
    pub until_time: Option<DateTime<Utc>>,
    /// Add a `kvault.source.offset` header to every restored record.
    #[arg(long, alias = "include_source_offset_header")]
    pub include_source_offset_header: bool,
    /// Validate and plan as the restore would, write nothing, and print the plan (topic to
    /// create, records and offsets per partition, groups, warnings) instead of restoring.
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    /// retention.ms of the topic the restore creates instead of the backed-up one (-1: keep
    /// forever), so the broker does not delete old restored records.
    #[arg(long, alias = "retention_override", allow_negative_numbers = true)]
    pub retention_override: Option<i64>,
    /// Put back the consumer groups the backup recorded, translated to the restored records:
    /// `true`, `false` or a comma-separated list of group ids.
    #[arg(long, alias = "restore_consumer_groups", value_parser = parse_group_choice)]
    pub restore_consumer_groups: Option<GroupChoice>,
    /// Where a group already has a commit on the target: `respect` (keep it) or `overwrite`.
    #[arg(long, alias = "consumer_groups_mode", default_value = "respect", value_parser = parse_groups_mode)]
    pub consumer_groups_mode: ConsumerGroupsMode,
    /// Backup sets: restore each topic as PREFIX + its name.
    #[arg(long, alias = "topic_prefix")]
    pub topic_prefix: Option<String>,
    /// Backup sets: restore some topics under other names (`orders=orders-copy,...`).
    #[arg(long, alias = "topic_mapping", value_delimiter = ',', value_parser = parse_rename)]
    pub topic_mapping: Option<Vec<(String, String)>>,
    /// Restore only the records this CEL expression keeps (the request's `filter_expression`).
    #[arg(long, alias = "filter_expression", alias = "filter-expression")]
    pub filter: Option<String>,
    /// Restore a deterministic fraction of the records, e.g. 0.01 (the request's `sample`).
    #[arg(long)]
    pub sample: Option<f64>,
    /// What --sample draws: `key` (every record of a sampled key) or `record`.
    #[arg(long, alias = "sample_by", value_enum, default_value_t = SampleByArg::Key)]
    pub sample_by: SampleByArg,
    /// A JSON file with any of the request's `filter_expression`, `sample`, `mask` and
    /// `exclude_keys` (docs/api.md, "Restores for test environments"); --filter and --sample
    /// take precedence over the file's.
    #[arg(long)]
    pub transform: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SampleByArg {
    Key,
    Record,
}

impl From<SampleByArg> for kvault_domain::restore_transform::SampleBy {
    fn from(by: SampleByArg) -> Self {
        match by {
            SampleByArg::Key => Self::Key,
            SampleByArg::Record => Self::Record,
        }
    }
}

fn parse_rename(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(from, to)| (from.trim().to_owned(), to.trim().to_owned()))
        .ok_or_else(|| format!("expected FROM=TO, got '{raw}'"))
}

fn parse_group_choice(raw: &str) -> Result<GroupChoice, String> {
    Ok(GroupChoice::parse_cli(raw))
}

fn parse_groups_mode(raw: &str) -> Result<ConsumerGroupsMode, String> {
    serde_json::from_value(serde_json::Value::String(raw.trim().to_owned()))
        .map_err(|_| format!("'{raw}' is not a mode: use respect or overwrite"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IfExistsArg {
    Fail,
    Append,
}

impl From<IfExistsArg> for IfExists {
    fn from(arg: IfExistsArg) -> Self {
        match arg {
            IfExistsArg::Fail => IfExists::Fail,
            IfExistsArg::Append => IfExists::Append,
        }
    }
}

pub(super) fn parse_compression(raw: &str) -> Result<CompressionType, String> {
    raw.parse::<CompressionType>().map_err(|e| e.message)
}
