//! Command-line shape: subcommands and flags. Flags are named like the JSON fields of the API
//! (kebab-case, with the snake_case spelling accepted as an alias), so a request body and a
//! command line read the same.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kvault_domain::drain::DrainStrategy;
use kvault_domain::migrate::OnEvaluationError;

mod backup_restore;
mod cat;
mod keys;
mod schedule;
mod server;

pub use backup_restore::{BackupArgs, IfExistsArg, RestoreArgs};
pub use cat::{CatArgs, CatFormat};
pub use keys::{KeysAction, KeysArgs};
pub use schedule::{ScheduleAction, ScheduleArgs, ScheduleCreateArgs};
pub use server::{ClusterArg, JobsAction, JobsArgs, ServerArgs};

#[derive(Debug, Parser)]
#[command(
    name = "kvault",
    version,
    about = "Back up, restore, migrate and drain Kafka topics"
)]
pub struct Cli {
    /// Configuration file layered over the built-in defaults (env: KVAULT_CONFIG).
    #[arg(long, global = true, env = "KVAULT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// No progress bar or progress lines on stderr (the JSON result and errors still print).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(flatten)]
    pub ad_hoc: AdHocCluster,
    #[command(subcommand)]
    pub command: Command,
}

/// A cluster given on the command line, kcat style, instead of (or over) the config file.
#[derive(Clone, Default, Args)]
pub struct AdHocCluster {
    /// Bootstrap servers (host:port,...): defines the cluster the command names (`--cluster`,
    /// default `adhoc`) without a config file.
    #[arg(
        short = 'b',
        long = "bootstrap-servers",
        alias = "bootstrap_servers",
        global = true
    )]
    pub bootstrap_servers: Option<String>,
    /// A librdkafka property for that cluster (repeatable), e.g. `-X security.protocol=SSL`.
    /// Also layered over a configured cluster's properties when `-b` is not given. Values are
    /// never printed.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property, global = true)]
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for AdHocCluster {
    /// `-X` values of secret properties (passwords, keys, OAuth configs) are redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = match kvault_domain::cluster::is_secret_property(k) {
                    true => "[redacted]",
                    false => v.as_str(),
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("AdHocCluster")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &properties)
            .finish()
    }
}

fn parse_property(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err("expected KEY=VALUE, e.g. -X security.protocol=SSL".into()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API server.
    Serve,
    /// Back up a topic into a new archive; prints the backup result as JSON.
    Backup(BackupArgs),
    /// Restore a backup into a topic; prints the restore result as JSON.
    Restore(RestoreArgs),
    /// Read a whole backup and check every checksum and count against its manifest.
    Verify(VerifyArgs),
    /// List finished backups (newest first), as `GET /api/kafka/backups` does.
    List(ListArgs),
    /// Print a backup's summary as `GET /api/kafka/backups/{id}` does (`--manifest`: the
    /// manifest as stored).
    Show(ShowArgs),
    /// Print records out of a backup, one per line (JSON or text), without restoring it.
    Cat(CatArgs),
    /// Copy a topic to another topic or cluster, optionally filtering and rewriting with CEL.
    Migrate(MigrateArgs),
    /// Watch a consumer group's lag until it is drained or the timeout passes.
    Drain(DrainArgs),
    /// Backup schedules: continuous incremental backups that `kvault serve` runs.
    Schedule(ScheduleArgs),
    /// The jobs of a running `kvault serve`: list, show, watch (progress until it ends),
    /// cancel (`--server`/`KVAULT_SERVER`, `--token`/`KVAULT_TOKEN`).
    Jobs(JobsArgs),
    /// A cluster's topics with their partition counts.
    Topics(ClusterArg),
    /// A cluster's consumer groups.
    Groups(ClusterArg),
    /// Encryption keys of backups: re-wrap data keys under another key, crypto-shred a backup.
    Keys(KeysArgs),
    /// Mint a JWT from the configured secret, for local use and CI.
    Token(TokenArgs),
    /// Produce sample messages into a topic (created when missing), to try kvault out.
    SampleData(SampleDataArgs),
    /// Print a shell completion script: `kvault completions bash > /etc/bash_completion.d/kvault`.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Validate and plan as the migration would, write nothing, and print the plan instead
    /// of migrating.
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    #[arg(long, alias = "source_cluster")]
    pub source_cluster: Option<String>,
    #[arg(long, alias = "source_topic")]
    pub source_topic: String,
    #[arg(long, alias = "target_cluster")]
    pub target_cluster: Option<String>,
    #[arg(long, alias = "target_topic")]
    pub target_topic: String,
    #[arg(long, alias = "max_messages")]
    pub max_messages: Option<u64>,
    /// CEL expression; a message is copied when it evaluates to true.
    #[arg(long, alias = "filter_expression")]
    pub filter_expression: Option<String>,
    /// CEL expression whose string or bytes result becomes the new key.
    #[arg(long, alias = "key_transformation")]
    pub key_transformation: Option<String>,
    /// A header added to every message, as NAME=VALUE; repeat for more.
    #[arg(long = "header", value_parser = parse_header)]
    pub header_additions: Vec<(String, String)>,
    #[arg(long, alias = "rate_limit_per_second")]
    pub rate_limit_per_second: Option<u32>,
    /// What a runtime expression error does to the migration.
    #[arg(long, alias = "on_error", value_enum, default_value_t = OnErrorArg::Skip)]
    pub on_error: OnErrorArg,
    /// Comma-separated consumer groups whose committed offsets are translated to the target
    /// after the copy (partitions must be kept 1:1).
    #[arg(long, alias = "translate_consumer_groups", value_delimiter = ',')]
    pub translate_consumer_groups: Vec<String>,
    /// When the target topic already holds messages: fail (exit 3), or append after them.
    #[arg(long, alias = "if_exists", value_enum, default_value_t = IfExistsArg::Fail)]
    pub if_exists: IfExistsArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnErrorArg {
    Skip,
    Fail,
}

impl From<OnErrorArg> for OnEvaluationError {
    fn from(arg: OnErrorArg) -> Self {
        match arg {
            OnErrorArg::Skip => OnEvaluationError::Skip,
            OnErrorArg::Fail => OnEvaluationError::Fail,
        }
    }
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
    #[arg(long, alias = "group_id")]
    pub group_id: String,
    /// Comma-separated topics to watch.
    #[arg(long, value_delimiter = ',', required = true)]
    pub topics: Vec<String>,
    #[arg(long, alias = "max_lag", default_value_t = 0)]
    pub max_lag: u64,
    #[arg(long, alias = "timeout_seconds", default_value_t = 300)]
    pub timeout_seconds: u64,
    #[arg(long, alias = "check_interval_ms", default_value_t = 5000)]
    pub check_interval_ms: u64,
    #[arg(long, value_enum, default_value_t = StrategyArg::LagBased)]
    pub strategy: StrategyArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    #[value(alias = "lag_based")]
    LagBased,
    #[value(alias = "time_based")]
    TimeBased,
}

impl From<StrategyArg> for DrainStrategy {
    fn from(arg: StrategyArg) -> Self {
        match arg {
            StrategyArg::LagBased => DrainStrategy::LagBased,
            StrategyArg::TimeBased => DrainStrategy::TimeBased,
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupIdArg {
    #[arg(long, alias = "backup_id")]
    pub backup_id: String,
}

/// `kvault verify`'s arguments.
pub type VerifyArgs = BackupIdArg;

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long, alias = "backup_id")]
    pub backup_id: String,
    /// Print the manifest as stored (every segment, offsets, topic configs) instead of the
    /// API's summary.
    #[arg(long)]
    pub manifest: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this cluster.
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
    /// Only backups of this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only the newest backup of each topic (with `--topic`: that topic's latest backup).
    #[arg(long)]
    pub latest: bool,
    /// Print only the backup ids, one per line (for scripts).
    #[arg(long)]
    pub ids: bool,
}

#[derive(Debug, Args)]
pub struct SampleDataArgs {
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
    #[arg(long)]
    pub topic: String,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Also commit this consumer group at the end of every partition (as if it had read
    /// everything), to try drains and consumer-group backups with.
    #[arg(long)]
    pub group: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Subject (user or pipeline name); API rate limits are per subject.
    #[arg(long)]
    pub sub: String,
    /// viewer, operator or admin.
    #[arg(long)]
    pub role: String,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
    /// Comma-separated cluster ids the token may touch (default: all).
    #[arg(long, value_delimiter = ',')]
    pub clusters: Option<Vec<String>>,
    /// Let a viewer read record contents (GET .../records); operators and admins may anyway.
    #[arg(long)]
    pub data: bool,
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got '{raw}'"))
}

/// An RFC 3339 instant (`2026-12-03T10:00:00Z`); anything else is refused with the expected
/// form and an example rather than the parser's bare complaint.
pub fn parse_time(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            format!(
                "expected an RFC 3339 time with date, time and zone, e.g. 2026-12-03T10:00:00Z \
                 or 2026-12-03T11:00:00+01:00 ({e})"
            )
        })
}

/// The longest `kvault token --ttl`: a year.
pub const MAX_TOKEN_TTL_SECS: u64 = 365 * 86_400;

/// `90s`, `30m`, `1h`, `7d`, or plain seconds; at most [`MAX_TOKEN_TTL_SECS`].
pub fn parse_ttl(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw
        .find(|c: char| !c.is_ascii_digit())
        .map_or((raw, "s"), |i| raw.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 30m, 1h or 7d, got '{raw}'"))?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' (use s, m, h or d)"
            ))
        }
    };
    let secs = n.saturating_mul(unit_secs);
    if secs == 0 {
        return Err("ttl must be positive".into());
    }
    if secs > MAX_TOKEN_TTL_SECS {
        return Err(format!(
            "ttl {raw} is longer than the longest allowed, 365d: long-lived tokens cannot be \
             revoked, mint short ones"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_must_be_rfc3339_and_the_error_shows_an_example() {
        let err = super::parse_time("2026-12-03").unwrap_err();
        assert!(
            err.contains("RFC 3339") && err.contains("2026-12-03T10:00:00Z"),
            "{err}"
        );
        let t = super::parse_time("2026-12-03T11:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-03T10:00:00+00:00");
    }

    use super::*;
    use kvault_domain::Offset;

    #[test]
    fn debug_of_ad_hoc_properties_redacts_secrets() {
        let c = AdHocCluster {
            bootstrap_servers: Some("b:9092".into()),
            properties: vec![
                (
                    "sasl.oauthbearer.config".into(),
                    "clientSecret=oauth-s3cr3t".into(),
                ),
                ("sasl.password".into(), "hunter2".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
            ],
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("oauth-s3cr3t") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_ttl("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_ttl("7d").unwrap().as_secs(), 604_800);
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("365d").is_ok());
        assert!(parse_ttl("366d").unwrap_err().contains("365d"));
        // Would overflow u64 seconds: refused, not wrapped or panicking.
        assert!(parse_ttl("99999999999999999d").is_err());
        assert!(parse_ttl("99999999999999999999999").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn snake_case_aliases_parse() {
        let cli = Cli::try_parse_from([
            "kvault",
            "backup",
            "--cluster",
            "local",
            "--topic",
            "events",
            "--max_messages",
            "10",
            "--start-offset",
            "5",
            "--partitions",
            "0,2",
            "--include-keys",
            "false",
        ])
        .unwrap();
        let Command::Backup(args) = cli.command else {
            panic!("not a backup")
        };
        assert_eq!(args.max_messages, Some(10));
        assert_eq!(args.start_offset, Offset::At(5));
        assert_eq!(args.partitions, Some(vec![0, 2]));
        assert!(!args.include_keys);
        assert!(args.include_headers);
    }
}
