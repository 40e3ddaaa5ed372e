//! The archive a restore reads, loaded and checked before anything is produced: the backup
//! (its whole chain when incremental), every checksum when `validate_checksum`, and what a
//! caller restoring a chain should know.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kvault_domain::chain::{chain_problems, load_chain, merge_chain};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestorePlan;
use kvault_domain::{BackupId, DomainError};

/// The longest chain a restore follows.
const MAX_CHAIN_LINKS: usize = 10_000;

/// The archive a restore reads, checked as every restore checks it.
pub(super) struct Checked {
    /// The archives to read, oldest first, each with the partitions it holds.
    pub(super) links: Vec<(BackupId, BTreeSet<i32>)>,
    /// The same archives as `(backup_id, uid)`, as the job's start record names them.
    pub(super) archives: Vec<(String, Option<String>)>,
    /// The one manifest the restore plans from (a chain's links merged).
    pub(super) manifest: kvault_domain::Manifest,
    /// Each link's own manifest, by backup id.
    pub(super) manifests: BTreeMap<String, Arc<kvault_domain::Manifest>>,
    pub(super) warnings: Vec<String>,
}

/// Loads the backup (its whole chain when incremental) and, when `validate_checksum`, checks
/// every checksum before anything is produced.
pub(super) async fn load_checked(
    store: &dyn ArchiveStore,
    plan: &RestorePlan,
    control: &OperationControl,
) -> DomainResult<Checked> {
    let last = store.manifest(&plan.backup_id).await?;
    let chain = load_chain(store, last, MAX_CHAIN_LINKS).await?;
    // The manifests' ids are parsed once, where they are read.
    let links = chain
        .iter()
        .map(|m| {
            let id = BackupId::parse(&m.backup_id)?;
            Ok((id, m.partitions.iter().map(|p| p.partition).collect()))
        })
        .collect::<DomainResult<Vec<(BackupId, BTreeSet<i32>)>>>()?;
    if plan.validate_checksum {
        for (backup_id, _) in &links {
            check_archive(store, backup_id, control).await?;
        }
        control.reset_progress();
    }
    let manifest = match chain.as_slice() {
        [only] if only.chain.is_none() => only.clone(),
        links => merge_chain(links, plan.until_time_ms)?,
    };
    Ok(Checked {
        links,
        archives: chain
            .iter()
            .map(|m| (m.backup_id.clone(), m.archive_uid.clone()))
            .collect(),
        manifest,
        warnings: chain_warnings(&chain),
        manifests: chain
            .into_iter()
            .map(|m| (m.backup_id.clone(), Arc::new(m)))
            .collect(),
    })
}

/// Every checksum of the backup, before anything is produced: a corrupt archive is refused
/// whole.
async fn check_archive(
    store: &dyn ArchiveStore,
    backup_id: &BackupId,
    control: &OperationControl,
) -> DomainResult<()> {
    let report = store.check_integrity(backup_id, control).await?;
    if !report.valid {
        return Err(DomainError::CorruptArchive {
            backup_id: backup_id.to_string(),
            reason: format!(
                "verification found {} problem(s): {}; nothing was restored",
                report.problems.len(),
                report.problems.join("; ")
            ),
        });
    }
    Ok(())
}

/// What a caller restoring a chain should know: links pruned before it, continuity problems.
fn chain_warnings(chain: &[kvault_domain::Manifest]) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(link) = chain.first().and_then(|m| m.chain.as_ref()) {
        warnings.push(format!(
            "the chain starts at {} (link {} after {}): the links before it were deleted, \
             so records before its start are not restored",
            chain[0].backup_id, link.sequence, link.root_id
        ));
    }
    warnings.extend(chain_problems(chain));
    warnings
}
