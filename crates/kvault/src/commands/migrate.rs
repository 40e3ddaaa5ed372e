//! `kvault migrate`: the same request and result as `POST /migrate`.

use kvault_domain::job::OperationControl;
use kvault_domain::migrate::MessageTransformation;
use kvault_domain::MigrateRequest;

use super::print_json;
use crate::cli::MigrateArgs;
use crate::context::Context;
use crate::exit::CliError;
use crate::progress::ProgressLine;

pub async fn run(context: &Context, args: MigrateArgs) -> Result<(), CliError> {
    let transformation = MessageTransformation {
        filter_expression: args.filter_expression,
        header_additions: args.header_additions,
        key_transformation: args.key_transformation,
    };
    let request = MigrateRequest {
        source_cluster: args.source_cluster,
        source_topic: args.source_topic,
        target_cluster: args.target_cluster,
        target_topic: args.target_topic,
        max_messages: args.max_messages,
        transformation: (!transformation.is_empty()).then_some(transformation),
        rate_limit_per_second: args.rate_limit_per_second,
        on_error: args.on_error.into(),
        translate_consumer_groups: args.translate_consumer_groups,
    };
    request.validate()?;
    let source = context.cluster(&request.source_cluster)?;
    let target = context.cluster(&request.target_cluster)?;
    let migration_id = format!("migration-{}", chrono::Utc::now().timestamp_millis());
    let control = OperationControl::new();
    let _progress = ProgressLine::start(migration_id.clone(), control.clone());
    let result = kvault_kafka::migrate(&source, &target, migration_id, request, control).await?;
    print_json(&result)
}
