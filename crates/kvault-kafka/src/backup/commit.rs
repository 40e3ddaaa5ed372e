//! The end of a backup: commit the archive (with the consumer groups read meanwhile) when every
//! partition succeeded, nobody cancelled and the whole archive fits the size limit; otherwise
//! remove what was written and report the root cause.

use chrono::Utc;
use kvault_domain::error::DomainResult;
use kvault_domain::fanout::all_or_root_cause;
use kvault_domain::manifest::{ConsumerGroupOffsets, Manifest, PartitionManifest};
use kvault_domain::DomainError;

use super::{BackupInProgress, SharedArchive};
use crate::admin::blocking;

/// Commits the archive when every partition succeeded, nobody cancelled and the whole archive
/// fits the size limit; otherwise removes what was written and reports the root cause.
pub(super) async fn commit_or_abort(
    archive: &SharedArchive,
    outcomes: Vec<DomainResult<PartitionManifest>>,
    consumer_groups: Vec<ConsumerGroupOffsets>,
    shared: &BackupInProgress,
) -> DomainResult<Manifest> {
    let control = &shared.control;
    let mut writer = archive
        .lock()
        .map_err(|_| DomainError::internal("archive writer lock poisoned"))?
        .take()
        .ok_or_else(|| DomainError::internal("archive writer already taken"))?;
    let outcome = all_or_root_cause(outcomes).and_then(|manifests| {
        // The running check sees whole blocks only; the last block of every partition is
        // counted here, so many small partitions cannot slip past the limit.
        let total: u64 = manifests.iter().map(|m| m.compressed_bytes).sum();
        if control.is_cancelled() {
            Err(DomainError::Cancelled)
        } else if let Some(max) = shared.max_bytes.filter(|max| total > *max) {
            Err(size_limit_exceeded(&shared.topic, max))
        } else {
            Ok(manifests)
        }
    });
    let mut manifests = match outcome {
        Ok(m) => m,
        Err(error) => {
            let _ = blocking(move || writer.abort()).await;
            return Err(error);
        }
    };
    manifests.sort_by_key(|m| m.partition);
    writer.set_consumer_groups(consumer_groups);
    let finished_at = Utc::now();
    blocking(move || writer.commit(manifests, finished_at)).await
}

pub(super) fn size_limit_exceeded(topic: &str, max: u64) -> DomainError {
    DomainError::LimitExceeded {
        message: format!(
            "backup of {topic} exceeds the archive size limit of {max} bytes \
             (max_backup_size_gb); the partial archive was removed"
        ),
        retry_after_secs: 0,
    }
}
