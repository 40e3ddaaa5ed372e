//! `kvault cat`'s arguments: which records of a backup to print, and how.

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct CatArgs {
    #[arg(long, alias = "backup_id")]
    pub backup_id: String,
    /// Only this partition (default: every partition, in order).
    #[arg(long)]
    pub partition: Option<i32>,
    /// First offset to print (needs --partition).
    #[arg(long, alias = "from_offset", conflicts_with = "from_time")]
    pub from_offset: Option<i64>,
    /// Only records at or after this instant: RFC 3339 or epoch milliseconds.
    #[arg(long, alias = "from_time")]
    pub from_time: Option<String>,
    /// Stop after this many records (default: all).
    #[arg(long)]
    pub limit: Option<u64>,
    /// A CEL expression, as a migration's filter_expression (e.g. "headers['type'] == 'order'").
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(long, value_enum, default_value_t = CatFormat::Json)]
    pub format: CatFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatFormat {
    /// One JSON object per line.
    Json,
    /// `partition:offset<TAB>key<TAB>value`; `null` for null, `base64:` before non-UTF-8 bytes.
    Text,
}
