//! The pure part of a restore: which source partitions, whether partitions map 1:1 or by key
//! hash, and whether `preserve_offsets` can be honoured; checked before anything is produced.

use crate::error::{DomainResult, ValidationError};
use crate::manifest::Manifest;
use crate::restore::{PartitionMapping, RestorePlan};

/// Identity when the target has the source's partition count, else by key hash.
pub fn partition_mapping(source_partitions: i32, target_partitions: i32) -> PartitionMapping {
    if source_partitions == target_partitions {
        PartitionMapping::Identity
    } else {
        PartitionMapping::Murmur2
    }
}

/// The source partitions to restore: the request's subset (each must be in the backup) or all.
pub fn select_partitions(plan: &RestorePlan, manifest: &Manifest) -> DomainResult<Vec<i32>> {
    let in_backup: Vec<i32> = manifest.partitions.iter().map(|p| p.partition).collect();
    match &plan.partitions {
        None => Ok(in_backup),
        Some(requested) => {
            if let Some(bad) = requested.iter().find(|p| !in_backup.contains(p)) {
                return Err(ValidationError::new(
                    "partitions",
                    bad,
                    format!(
                        "backup {} holds partitions {in_backup:?}",
                        manifest.backup_id
                    ),
                )
                .into());
            }
            let mut sorted = requested.clone();
            sorted.sort_unstable();
            Ok(sorted)
        }
    }
}

pub fn check_offsets_preservable(
    plan: &RestorePlan,
    manifest: &Manifest,
    sources: &[i32],
    mapping: PartitionMapping,
) -> DomainResult<()> {
    let refuse = |why: String| -> DomainResult<()> {
        Err(ValidationError::new("preserve_offsets", true, why).into())
    };
    if mapping != PartitionMapping::Identity {
        return refuse(format!(
            "the target has a different partition count than the source ({}); records would \
             be repartitioned, so offsets cannot be kept",
            manifest.topic.partition_count
        ));
    }
    if plan
        .target_partitions
        .is_some_and(|n| n != manifest.topic.partition_count)
    {
        return refuse("target_partitions differs from the source's partition count".into());
    }
    for p in sources {
        let Some(pm) = manifest.partition(*p) else {
            continue;
        };
        if pm.message_count == 0 {
            continue;
        }
        if pm.first_offset != Some(0) {
            return refuse(format!(
                "source partition {p} starts at offset {} (Kafka assigns offsets from 0 in an \
                 empty partition); use include_source_offset_header to translate offsets instead",
                pm.first_offset.unwrap_or(pm.start_offset)
            ));
        }
        if !pm.contiguous {
            return refuse(format!(
                "source partition {p} has offset gaps (compaction or transaction markers); \
                 Kafka would renumber the records; use include_source_offset_header instead"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::RestoreRequest;

    #[test]
    fn the_mapping_is_identity_only_for_equal_partition_counts() {
        assert_eq!(partition_mapping(3, 3), PartitionMapping::Identity);
        assert_eq!(partition_mapping(3, 6), PartitionMapping::Murmur2);
    }

    #[test]
    fn preserving_offsets_is_refused_when_records_would_be_repartitioned() {
        let mut req = RestoreRequest::new("backup-1", "t");
        req.preserve_offsets = true;
        let plan = req.validate().unwrap();
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "backup_id": "backup-1", "cluster_id": "c",
            "topic": {"name": "t", "partition_count": 3, "replication_factor": 1},
            "compression": {"codec": "zstd"}, "include_keys": true, "include_headers": true,
            "created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "partitions": []
        }))
        .unwrap();
        let err = check_offsets_preservable(&plan, &manifest, &[0], PartitionMapping::Murmur2)
            .expect_err("repartitioned");
        assert!(
            matches!(err, crate::DomainError::Validation(ref v) if v.field == "preserve_offsets")
        );
        check_offsets_preservable(&plan, &manifest, &[0], PartitionMapping::Identity)
            .expect("nothing to restore in partition 0 of this manifest: nothing to refuse");
    }
}
