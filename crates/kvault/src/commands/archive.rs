//! `kvault verify`, `kvault list` and `kvault show`: reading what is in the archive. Each prints
//! the body of the API route for the same question, built by the same code.

use kvault_api::routes::backups::{BackupList, BackupSummary};
use kvault_domain::chain::verify_report;
use kvault_domain::{BackupId, Manifest};

use super::print_json;
use crate::cli::{ListArgs, ShowArgs, VerifyArgs};
use crate::context::Context;
use crate::exit::{CliError, EXIT_CORRUPT};
use crate::progress::Progress;

pub async fn verify(context: &Context, args: VerifyArgs) -> Result<(), CliError> {
    let id = BackupId::parse(&args.backup_id)?;
    let store = context.existing_store()?;
    let manifest = store.manifest(&id).await?;
    let control = kvault_domain::job::OperationControl::new();
    control.set_total(manifest.total_messages());
    let _progress = Progress::start(context.progress, format!("verify {id}"), control.clone());
    let report = verify_report(store.as_ref(), &id, manifest, &control).await?;
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

/// `kvault list`: `GET /backups`' body; `--latest` keeps the newest backup of each topic,
/// `--ids` prints only the ids, one per line.
pub async fn list(context: &Context, args: ListArgs) -> Result<(), CliError> {
    let store = context.existing_store()?;
    let manifests = store.list().await?;
    context.warn_about_other_store();
    let mut seen = std::collections::HashSet::new();
    let backups: Vec<BackupSummary> = manifests
        .iter()
        .filter(|m| args.cluster.as_deref().is_none_or(|c| m.cluster_id == c))
        .filter(|m| args.topic.as_deref().is_none_or(|t| m.topic.name == t))
        // Newest first: the first of each topic is its latest.
        .filter(|m| !args.latest || seen.insert((m.cluster_id.clone(), m.topic.name.clone())))
        .map(|m| BackupSummary::from_manifest(m, false))
        .collect();
    if args.ids {
        for backup in &backups {
            println!("{}", backup.backup_id);
        }
        return Ok(());
    }
    print_json(&BackupList { backups })
}

/// `kvault show`: `GET /backups/{id}`'s body, or with `--manifest` the manifest as stored.
pub async fn show(context: &Context, args: ShowArgs) -> Result<(), CliError> {
    let id = BackupId::parse(&args.backup_id)?;
    let manifest: Manifest = context.existing_store()?.manifest(&id).await?;
    if args.manifest {
        return print_json(&manifest);
    }
    print_json(&BackupSummary::from_manifest(&manifest, true))
}
