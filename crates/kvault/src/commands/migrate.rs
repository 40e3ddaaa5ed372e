//! `kvault migrate`: the same request and result as `POST /migrate`.

use kvault_domain::job::OperationControl;
use kvault_domain::migrate::MessageTransformation;
use kvault_domain::operations::MigrationPlan;
use kvault_domain::MigrateRequest;

use super::print_json;
use crate::cli::MigrateArgs;
use crate::context::Context;
use crate::exit::CliError;
use crate::progress::Progress;

pub async fn run(context: &Context, args: MigrateArgs) -> Result<(), CliError> {
    let transformation = MessageTransformation {
        filter_expression: args.filter_expression,
        header_additions: args.header_additions,
        key_transformation: args.key_transformation,
    };
    let request = MigrateRequest {
        source_cluster: context.cluster_name(args.source_cluster, "--source-cluster")?,
        source_topic: args.source_topic,
        target_cluster: context.cluster_name(args.target_cluster, "--target-cluster")?,
        target_topic: args.target_topic,
        max_messages: args.max_messages,
        transformation: (!transformation.is_empty()).then_some(transformation),
        rate_limit_per_second: args.rate_limit_per_second,
        on_error: args.on_error.into(),
        translate_consumer_groups: args.translate_consumer_groups,
        consumer_groups_mode: Default::default(),
        if_exists: args.if_exists.into(),
    };
    let plan = MigrationPlan::new(request, MigrationPlan::generate_id(chrono::Utc::now()))?;
    let migration_id = plan.migration_id.clone();
    let clusters = [plan.source.as_str(), plan.target.as_str()];
    let engine = context.engine(&clusters, context.archives()?).await?;
    let control = OperationControl::new();
    if args.dry_run {
        let planned = engine.migrate_dry_run(plan, control).await?;
        return print_json(&planned);
    }
    let _progress = Progress::start(context.progress, migration_id, control.clone());
    let result = engine.migrate(plan, control).await?;
    print_json(&result)
}
