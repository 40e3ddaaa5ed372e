//! `kvault restore`: the same request and result as `POST /clusters/{id}/restore`. Without
//! `--cluster` it restores into the cluster the backup was taken from. A backup set's id
//! restores every topic of the set.

use std::sync::Arc;

use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore_set::{run_restore_set, set_members};
use kvault_domain::{BackupId, ClusterId, DomainError, RestoreRequest};

use super::print_json;
use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit::CliError;
use crate::progress::Progress;

pub async fn run(context: &Context, args: RestoreArgs) -> Result<(), CliError> {
    let backup_id = match &args.schedule_id {
        Some(schedule_id) => super::schedule::latest_run(context, schedule_id).await?,
        None => args.backup_id,
    };
    let request = RestoreRequest {
        backup_id,
        schedule_id: args.schedule_id,
        target_topic: args.target_topic,
        target_partitions: args.target_partitions,
        replication_factor: args.replication_factor,
        preserve_offsets: args.preserve_offsets,
        rate_limit_per_second: args.rate_limit_per_second,
        validate_checksum: args.validate_checksum,
        if_exists: args.if_exists.into(),
        partitions: args.partitions,
        until_time: args.until_time,
        include_source_offset_header: args.include_source_offset_header,
        retention_override: args.retention_override,
        restore_consumer_groups: args.restore_consumer_groups,
        consumer_groups_mode: args.consumer_groups_mode,
        topic_prefix: args.topic_prefix,
        topic_mapping: args.topic_mapping.map(|pairs| pairs.into_iter().collect()),
    };
    let store = context.existing_store()?;
    if request.target_topic.is_empty()
        || request.topic_prefix.is_some()
        || request.topic_mapping.is_some()
    {
        let id = BackupId::parse(&request.backup_id)?;
        if matches!(store.manifest(&id).await, Err(DomainError::NotFound { .. })) {
            if args.dry_run {
                return Err(DomainError::from(kvault_domain::ValidationError::new(
                    "dry_run",
                    true,
                    format!(
                        "backup '{id}' is not one archive: --dry-run plans the restore of a \
                         single backup; dry-run each topic of a backup set by its own id"
                    ),
                ))
                .into());
            }
            return restore_set(context, args.cluster, request, store).await;
        }
    }
    let plan = request.validate()?;
    let manifest = store.manifest(&plan.backup_id).await?;
    let cluster_id = args.cluster.unwrap_or_else(|| manifest.cluster_id.clone());
    let engine = context.engine(&[&cluster_id], store).await?;
    let cluster = ClusterId::parse(&cluster_id)?;
    let control = OperationControl::new();
    if args.dry_run {
        let planned = engine.restore_dry_run(&cluster, plan, control).await?;
        return print_json(&planned);
    }
    // The bar's length: the selected partitions' records (until_time may take fewer).
    control.set_total(
        manifest
            .partitions
            .iter()
            .filter(|p| {
                plan.partitions
                    .as_ref()
                    .is_none_or(|s| s.contains(&p.partition))
            })
            .map(|p| p.message_count)
            .sum(),
    );
    let label = format!("restore {}", plan.backup_id);
    let _progress = Progress::start(context.progress, label, control.clone());
    let result = engine.restore(&cluster, plan, control).await?;
    print_json(&result)
}

/// `kvault restore --backup-id SET`: every topic of a backup set.
async fn restore_set(
    context: &Context,
    cluster: Option<String>,
    request: RestoreRequest,
    store: Arc<dyn ArchiveStore>,
) -> Result<(), CliError> {
    let members = set_members(store.as_ref(), &request.backup_id).await?;
    let mut plan = request.validate_set(&members)?;
    plan.parallelism = context.settings.workers.set_parallelism;
    let cluster_id = cluster.unwrap_or_else(|| members[0].cluster_id.clone());
    let engine = context.engine(&[&cluster_id], store).await?;
    let cluster = ClusterId::parse(&cluster_id)?;
    let control = OperationControl::new();
    control.set_total(members.iter().map(|m| m.total_messages()).sum());
    let label = format!("restore set {}", plan.set_id);
    let _progress = Progress::start(context.progress, label, control.clone());
    let result = run_restore_set(engine.as_ref(), &cluster, plan, control).await?;
    print_json(&result)
}
