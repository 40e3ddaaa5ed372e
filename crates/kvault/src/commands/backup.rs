//! `kvault backup`: the same request and result as `POST /clusters/{id}/backup`, for one
//! topic or a set (`--topics`, `--topic-pattern`).

use kvault_domain::job::OperationControl;
use kvault_domain::start::{run_backup, BackupWork};
use kvault_domain::{BackupRequest, ClusterId};

use super::print_json;
use crate::cli::BackupArgs;
use crate::context::Context;
use crate::exit::CliError;
use crate::progress::Progress;

pub async fn run(context: &Context, args: BackupArgs) -> Result<(), CliError> {
    let request = BackupRequest {
        topic: args.topic,
        topics: args.topics,
        topic_pattern: args.topic_pattern,
        compression: args.compression,
        compression_level: args.compression_level,
        max_messages: args.max_messages,
        start_offset: args.start_offset,
        end_offset: args.end_offset,
        partitions: args.partitions,
        include_headers: args.include_headers,
        include_keys: args.include_keys,
        rate_limit_per_second: args.rate_limit_per_second,
        start_time: args.start_time,
        end_time: args.end_time,
        backup_id: args.backup_id,
        include_consumer_groups: args.include_consumer_groups,
        consumer_groups: args.consumer_groups,
        incremental_from: args.incremental_from,
    };
    let defaults = context.settings.backup.request_defaults();
    let name = context.cluster_name(args.cluster, "--cluster")?;
    let cluster = ClusterId::parse(&name)?;
    let store = context.archives()?;
    let engine = context.engine(&[&name], store.clone()).await?;
    let control = OperationControl::new();
    let parallelism = context.settings.workers.set_parallelism;
    let work = request.plan(defaults, chrono::Utc::now(), parallelism)?;
    let label = match &work {
        BackupWork::Set(plan) => format!("backup set {}", plan.set_id),
        BackupWork::Topic(plan) => format!("backup {}", plan.backup_id),
    };
    let _progress = Progress::start(context.progress, label, control.clone());
    let done = run_backup(
        engine.as_ref(),
        store.as_ref(),
        &cluster,
        work,
        control,
        false,
    )
    .await?;
    print_json(&done)
}
