//! The claim a backup set holds on its set id while it is written, so that a set id names one
//! set only. The claim is a writer of an archive named after the set that is never committed:
//! the store's `create` is exclusive per id on every backend and across replicas (a local
//! directory made with `create_dir`, an object-storage lease), so of two sets racing for one
//! id, the second fails to take the claim; and a set that takes the claim after another set of
//! the id finished finds that set's archives and gives the claim back. A claim left by a killed
//! writer is an abandoned partial backup, removed by the store's sweep (or at once by a
//! takeover of the set's job).

use chrono::Utc;

use super::BackupSetPlan;
use crate::error::{DomainError, DomainResult};
use crate::ids::ClusterId;
use crate::manifest::TopicMetadata;
use crate::ports::{ArchiveSpec, ArchiveStore, ArchiveWriter};
use crate::restore_set::set_members;

/// Takes the set id for this set (see the module doc): `Conflict` when another set of that id
/// is being written or has been written, or a backup has that id.
pub(crate) async fn claim_set_id(
    store: &dyn ArchiveStore,
    cluster: &ClusterId,
    plan: &BackupSetPlan,
) -> DomainResult<Box<dyn ArchiveWriter>> {
    let taken = |why: &str| {
        DomainError::conflict_on(
            format!(
                "backup set id '{}' is taken: {why}; choose another backup_id",
                plan.set_id
            ),
            "backup_id",
            &plan.set_id,
        )
    };
    let claim = store
        .create(ArchiveSpec {
            backup_id: plan.set_id.clone(),
            archive_uid: plan.set_uid.clone(),
            cluster_id: cluster.clone(),
            topic: TopicMetadata {
                name: String::new(),
                partition_count: 0,
                replication_factor: 0,
                configs: Default::default(),
            },
            compression: plan.template.compression,
            include_keys: false,
            include_headers: false,
            created_at: Utc::now(),
            consumer_groups: Vec::new(),
            backup_set: None,
            chain: None,
        })
        .await
        .map_err(|e| match e {
            DomainError::Conflict { .. } => {
                taken("another set of that id is being written, or a backup has that id")
            }
            other => other,
        })?;
    match set_members(store, plan.set_id.as_str()).await {
        Err(DomainError::NotFound { .. }) => Ok(claim),
        Ok(_) | Err(DomainError::Conflict { .. }) => {
            release(claim);
            Err(taken("archives of a set with that id exist"))
        }
        Err(e) => {
            release(claim);
            Err(e)
        }
    }
}

/// Gives the set id back. The claim wrote nothing but its lease (a short blocking call); a
/// failed abort leaves a lease that the store's sweep removes once it is stale.
pub(crate) fn release(claim: Box<dyn ArchiveWriter>) {
    let _ = claim.abort();
}
