//! `kvault backup`: the same request and result as `POST /clusters/{id}/backup`, for one
//! topic or a set (`--topics`, `--topic-pattern`).

use kvault_domain::backup_set::run_backup_set;
use kvault_domain::job::OperationControl;
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
    let store = context.store()?;
    let engine = context.engine(&[&name], store.clone()).await?;
    let control = OperationControl::new();
    if request.is_set() {
        let mut plan = request.validate_set(defaults, chrono::Utc::now())?;
        plan.parallelism = context.settings.workers.set_parallelism;
        let label = format!("backup set {}", plan.set_id);
        let _progress = Progress::start(context.progress, label, control.clone());
        let result =
            run_backup_set(engine.as_ref(), store.as_ref(), &cluster, plan, control).await?;
        return print_json(&result);
    }
    let plan = request.validate(defaults, chrono::Utc::now())?;
    let _progress = Progress::start(
        context.progress,
        format!("backup {}", plan.backup_id),
        control.clone(),
    );
    let result = engine.backup(&cluster, plan, control).await?;
    print_json(&result)
}
