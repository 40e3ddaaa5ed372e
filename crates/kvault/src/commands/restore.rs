//! `kvault restore`: the same request and result as `POST /clusters/{id}/restore`. Without
//! `--cluster` it restores into the cluster the backup was taken from. A backup set's id
//! restores every topic of the set. `--filter`, `--sample` and `--transform FILE` fill the
//! request's `filter_expression`, `sample`, `mask` and `exclude_keys`.

use kvault_domain::job::OperationControl;
use kvault_domain::restore_transform::{ExcludedKey, MaskRule, SampleRequest};
use kvault_domain::start::{plan_restore, run_restore, RestoreWork};
use kvault_domain::{ClusterId, DomainError, RestoreRequest};

use super::print_json;
use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit::CliError;
use crate::progress::Progress;

pub async fn run(context: &Context, args: RestoreArgs) -> Result<(), CliError> {
    let file = transform_fields(&args)?;
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
        filter_expression: file.filter_expression,
        sample: file.sample,
        mask: file.mask,
        exclude_keys: file.exclude_keys,
    };
    let store = context.existing_store()?;
    let parallelism = context.settings.workers.set_restore_parallelism;
    let work = plan_restore(store.as_ref(), &request, parallelism).await?;
    let (source_cluster, total, label) = summary(&work, args.dry_run)?;
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

/// The source cluster, the progress bar's length and its label; a set cannot be dry-run.
fn summary(work: &RestoreWork, dry_run: bool) -> Result<(String, u64, String), CliError> {
    Ok(match work {
        RestoreWork::Set { plan, members } => {
            if dry_run {
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
    })
}

/// The transform fields of a restore: `--transform FILE`, with `--filter` and `--sample` in
/// place of the file's.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformFile {
    filter_expression: Option<String>,
    sample: Option<SampleRequest>,
    mask: Option<Vec<MaskRule>>,
    exclude_keys: Option<Vec<ExcludedKey>>,
}

fn transform_fields(args: &RestoreArgs) -> Result<TransformFile, CliError> {
    let mut file = match &args.transform {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::usage(format!("--transform {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("--transform {}: {e}", path.display())))?
        }
        None => TransformFile::default(),
    };
    if let Some(expr) = &args.filter {
        file.filter_expression = Some(expr.clone());
    }
    if let Some(ratio) = args.sample {
        file.sample = Some(SampleRequest {
            ratio,
            by: args.sample_by.into(),
            seed: 0,
        });
    }
    Ok(file)
}
