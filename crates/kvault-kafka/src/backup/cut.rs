//! The backup's cut and topic as read when it starts: the high watermarks narrowed by the
//! plan's offsets and times per partition, and the topic's metadata the archive records.

use std::collections::BTreeMap;

use kvault_domain::backup::BackupPlan;
use kvault_domain::backup_planning::{plan_range, PartitionMarks, PartitionRange};
use kvault_domain::error::DomainResult;
use kvault_domain::manifest::TopicMetadata;

use crate::admin::{Admin, TopicInfo};

/// The topic as the archive records it; configs that cannot be read are noted, not fatal.
pub(super) async fn read_topic(
    admin: &Admin,
    plan: &BackupPlan,
    info: &TopicInfo,
    warnings: &mut Vec<String>,
) -> TopicMetadata {
    let configs = match admin.topic_configs(&plan.topic).await {
        Ok(configs) => configs,
        Err(e) => {
            warnings.push(format!(
                "topic configs could not be read ({e}); the archive records none"
            ));
            Default::default()
        }
    };
    TopicMetadata {
        name: plan.topic.clone(),
        partition_count: info.partition_count(),
        replication_factor: info.replication_factor,
        configs,
    }
}

/// The cut (high watermarks now) narrowed by the plan's offsets and times, per partition.
pub(super) async fn plan_ranges(
    admin: &Admin,
    plan: &BackupPlan,
    selected: &[i32],
    continue_at: &BTreeMap<i32, i64>,
) -> DomainResult<Vec<PartitionRange>> {
    let marks = admin.watermarks(&plan.topic, selected).await?;
    let from_time = match plan.start_time_ms {
        Some(ts) => Some(admin.offsets_for_time(&plan.topic, selected, ts).await?),
        None => None,
    };
    let until_time = match plan.end_time_ms {
        Some(ts) => Some(admin.offsets_for_time(&plan.topic, selected, ts).await?),
        None => None,
    };
    Ok(selected
        .iter()
        .map(|p| {
            let marks = PartitionMarks {
                watermarks: marks.get(p).copied().unwrap_or((0, 0)),
                first_at_start_time: from_time.as_ref().and_then(|m| m.get(p).copied()),
                first_after_end_time: until_time.as_ref().and_then(|m| m.get(p).copied()),
                continue_at: continue_at.get(p).copied(),
            };
            plan_range(plan, *p, marks)
        })
        .collect())
}
