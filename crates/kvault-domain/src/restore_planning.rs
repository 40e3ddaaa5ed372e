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

/// A warning when restored records are older than the `retention.ms` in effect on the target
/// topic (restored records keep their timestamps, and retention goes by them): the broker may delete them soon after a restore that
/// reported success. `now_ms` is the current time in Unix milliseconds.
pub fn retention_warning(
    manifest: &Manifest,
    sources: &[i32],
    retention_ms: Option<i64>,
    now_ms: i64,
) -> Option<String> {
    let retention = retention_ms.filter(|r| *r > 0)?;
    let oldest = manifest
        .partitions
        .iter()
        .filter(|p| sources.contains(&p.partition))
        .flat_map(|p| &p.segments)
        .filter(|s| s.message_count > 0)
        .map(|s| s.min_timestamp)
        .min()?;
    let cutoff = now_ms.saturating_sub(retention);
    (oldest < cutoff).then(|| {
        format!(
            "some restored records are older than the target topic's retention.ms \
             ({retention} ms): the broker may delete them soon after this restore (oldest \
             record timestamp {oldest} ms). To keep them, restore into a new topic with \
             retention_override: -1, or raise the target's retention.ms"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with_oldest(ts: i64) -> Manifest {
        let json = serde_json::json!({
            "format_version": 1, "backup_id": "b", "cluster_id": "c",
            "topic": {"name": "t", "partition_count": 1, "replication_factor": 1, "configs": {}},
            "compression": {"codec": "none", "level": null},
            "include_keys": true, "include_headers": true,
            "created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
            "partitions": [{"partition": 0, "start_offset": 0, "end_offset": 1,
              "first_offset": 0, "last_offset": 0, "message_count": 1, "raw_bytes": 1,
              "compressed_bytes": 1, "contiguous": true,
              "segments": [{"file": "p0/0.seg", "sha256": "x", "size_bytes": 1, "block_count": 1,
                "message_count": 1, "first_offset": 0, "last_offset": 0,
                "min_timestamp": ts, "max_timestamp": ts, "raw_bytes": 1}]}]
        });
        serde_json::from_value(json).expect("manifest")
    }

    #[test]
    fn records_older_than_the_retention_are_warned_about() {
        let day = 86_400_000;
        let now = 100 * day;
        let old = manifest_with_oldest(now - 10 * day);
        assert!(retention_warning(&old, &[0], Some(7 * day), now).is_some());
        assert!(retention_warning(&old, &[0], Some(30 * day), now).is_none());
        // Infinite retention, no retention setting, or the partition not restored: no warning.
        assert!(retention_warning(&old, &[0], Some(-1), now).is_none());
        assert!(retention_warning(&old, &[0], None, now).is_none());
        assert!(retention_warning(&old, &[1], Some(day), now).is_none());
    }
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
