//! `kvault verify`, `kvault list` and `kvault show`: reading what is in the archive.

use chrono::{DateTime, Utc};
use kvault_domain::{BackupId, CompressionType, Manifest};
use serde::Serialize;

use super::print_json;
use crate::cli::{BackupIdArg, ListArgs};
use crate::context::Context;
use crate::exit::{CliError, EXIT_CORRUPT};
use crate::progress::Progress;

pub async fn verify(context: &Context, args: BackupIdArg) -> Result<(), CliError> {
    let id = BackupId::parse(&args.backup_id)?;
    let store = context.store()?;
    let control = kvault_domain::job::OperationControl::new();
    control.set_total(store.manifest(&id).await?.total_messages());
    let _progress = Progress::start(context.progress, format!("verify {id}"), control.clone());
    let report = store.verify(&id, &control).await?;
    print_json(&report)?;
    if report.valid {
        Ok(())
    } else {
        Err(CliError::new(
            EXIT_CORRUPT,
            format!(
                "backup '{}' failed verification: {}",
                report.backup_id,
                report.problems.join("; ")
            ),
        ))
    }
}

/// One line of `kvault list`.
#[derive(Debug, Serialize)]
struct BackupSummary {
    backup_id: String,
    cluster_id: String,
    topic: String,
    compression: CompressionType,
    partitions: usize,
    total_messages: u64,
    total_size_bytes: u64,
    compressed_size_bytes: u64,
    created_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

impl From<&Manifest> for BackupSummary {
    fn from(m: &Manifest) -> Self {
        Self {
            backup_id: m.backup_id.clone(),
            cluster_id: m.cluster_id.clone(),
            topic: m.topic.name.clone(),
            compression: m.compression.codec,
            partitions: m.partitions.len(),
            total_messages: m.total_messages(),
            total_size_bytes: m.total_raw_bytes(),
            compressed_size_bytes: m.total_compressed_bytes(),
            created_at: m.created_at,
            finished_at: m.finished_at,
        }
    }
}

pub async fn list(context: &Context, args: ListArgs) -> Result<(), CliError> {
    let store = context.store()?;
    let manifests = store.list().await?;
    let summaries: Vec<BackupSummary> = manifests
        .iter()
        .filter(|m| args.cluster.as_deref().is_none_or(|c| m.cluster_id == c))
        .filter(|m| args.topic.as_deref().is_none_or(|t| m.topic.name == t))
        .map(BackupSummary::from)
        .collect();
    print_json(&summaries)
}

pub async fn show(context: &Context, args: BackupIdArg) -> Result<(), CliError> {
    let id = BackupId::parse(&args.backup_id)?;
    let manifest = context.store()?.manifest(&id).await?;
    print_json(&manifest)
}
