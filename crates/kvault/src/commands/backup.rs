//! `kvault backup`: the same request and result as `POST /clusters/{id}/backup`.

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
    };
    let plan = request.validate(
        context.settings.backup.request_defaults(),
        chrono::Utc::now(),
    )?;
    let name = context.cluster_name(args.cluster, "--cluster")?;
    let cluster = ClusterId::parse(&name)?;
    let engine = context.engine(&[&name], context.store()?)?;
    let control = OperationControl::new();
    let _progress = Progress::start(
        context.progress,
        format!("backup {}", plan.backup_id),
        control.clone(),
    );
    let result = engine.backup(&cluster, plan, control).await?;
    print_json(&result)
}
