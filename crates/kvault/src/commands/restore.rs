//! `kvault restore`: the same request and result as `POST /clusters/{id}/restore`. Without
//! `--cluster` it restores into the cluster the backup was taken from. A backup set's id
//! restores every topic of the set.

use kvault_domain::job::OperationControl;
use kvault_domain::start::{plan_restore, run_restore, RestoreWork};
use kvault_domain::{ClusterId, DomainError, RestoreRequest};

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
    let parallelism = context.settings.workers.set_parallelism;
    let work = plan_restore(store.as_ref(), &request, parallelism).await?;
    let (source_cluster, total, label) = match &work {
        RestoreWork::Set { plan, members } => {
            if args.dry_run {
                return Err(DomainError::from(kvault_domain::ValidationError::new(
                    "dry_run",
                    true,
                    format!(
                        "backup '{}' is not one archive: --dry-run plans the restore of a \
                         single backup; dry-run each topic of a backup set by its own id",
                        plan.set_id
                    ),
                ))
                .into());
            }
            let total = members.iter().map(|m| m.total_messages()).sum();
            let label = format!("restore set {}", plan.set_id);
            (members[0].cluster_id.clone(), total, label)
        }
        RestoreWork::Archive { plan, manifest } => {
            // The bar's length: the selected partitions' records (until_time may take fewer).
            let total = manifest
                .partitions
                .iter()
                .filter(|p| {
                    plan.partitions
                        .as_ref()
                        .is_none_or(|s| s.contains(&p.partition))
                })
                .map(|p| p.message_count)
                .sum();
            let label = format!("restore {}", plan.backup_id);
            (manifest.cluster_id.clone(), total, label)
        }
    };
    let cluster_id = args.cluster.unwrap_or(source_cluster);
    let engine = context.engine(&[&cluster_id], store).await?;
    let cluster = ClusterId::parse(&cluster_id)?;
    let control = OperationControl::new();
    if args.dry_run {
        if let RestoreWork::Archive { plan, .. } = work {
            let planned = engine.restore_dry_run(&cluster, plan, control).await?;
            return print_json(&planned);
        }
    }
    control.set_total(total);
    let _progress = Progress::start(context.progress, label, control.clone());
    let done = run_restore(engine.as_ref(), &cluster, work, control).await?;
    print_json(&done)
}
