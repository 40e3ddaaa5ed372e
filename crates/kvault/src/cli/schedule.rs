//! The flags of `kvault schedule`: create, list, show and delete backup schedules, named like
//! the fields of `POST /api/kafka/schedules`.

use clap::{Args, Subcommand};
use kvault_domain::CompressionType;

use super::backup_restore::parse_compression;

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub action: ScheduleAction,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Create a schedule in the configured database; `kvault serve` (any replica on that
    /// database) runs it. Prints the schedule as JSON.
    Create(Box<ScheduleCreateArgs>),
    /// List every schedule with its next run and latest runs.
    List,
    /// Print one schedule with its next run and latest runs.
    Show(ScheduleIdArg),
    /// Delete a schedule: no further runs (its backups stay).
    Delete(ScheduleIdArg),
}

#[derive(Debug, Args)]
pub struct ScheduleIdArg {
    #[arg(long, alias = "schedule_id")]
    pub schedule_id: String,
}

#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// Name the schedule (default: generated).
    #[arg(long, alias = "schedule_id")]
    pub schedule_id: Option<String>,
    /// Cluster id from the `clusters:` config section.
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: String,
    /// The topic to back up (or `--topics` / `--topic-pattern` for a set per run).
    #[arg(long, required_unless_present_any = ["topics", "topic_pattern"], default_value = "")]
    pub topic: String,
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["topic", "topic_pattern"])]
    pub topics: Option<Vec<String>>,
    #[arg(long, alias = "topic_pattern", conflicts_with = "topic")]
    pub topic_pattern: Option<String>,
    /// Run at this interval: "30s", "15m", "1h", "1d".
    #[arg(long, required_unless_present = "cron", conflicts_with = "cron")]
    pub every: Option<String>,
    /// Run when this cron expression matches (UTC), e.g. "*/15 * * * *".
    #[arg(long)]
    pub cron: Option<String>,
    /// Delete runs that finished longer ago than this ("7d"), oldest first.
    #[arg(long)]
    pub retention: Option<String>,
    #[arg(long, value_parser = parse_compression)]
    pub compression: Option<CompressionType>,
    #[arg(long, alias = "compression_level")]
    pub compression_level: Option<i32>,
    #[arg(long, alias = "include_headers", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_headers: bool,
    #[arg(long, alias = "include_keys", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_keys: bool,
    #[arg(long, alias = "rate_limit_per_second")]
    pub rate_limit_per_second: Option<u32>,
    #[arg(long, alias = "include_consumer_groups", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_consumer_groups: bool,
    #[arg(long, alias = "consumer_groups", value_delimiter = ',')]
    pub consumer_groups: Option<Vec<String>>,
}
