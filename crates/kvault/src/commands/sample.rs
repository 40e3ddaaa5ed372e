//! `kvault sample-data`: fills a topic with sample messages so a newcomer can try a backup
//! (and, with `--group`, gives a consumer group committed offsets on it).

use kvault_domain::ValidationError;

use super::print_json;
use crate::cli::SampleDataArgs;
use crate::context::Context;
use crate::exit::CliError;

pub async fn run(context: &Context, args: SampleDataArgs) -> Result<(), CliError> {
    kvault_domain::ids::validate_topic_name("topic", &args.topic)?;
    if args.partitions < 1 {
        return Err(
            ValidationError::new("partitions", args.partitions, "must be at least 1").into(),
        );
    }
    let cluster = context
        .cluster(&context.cluster_name(args.cluster, "--cluster")?)
        .await?;
    let mut report = cluster
        .produce_sample(&args.topic, args.partitions, args.messages)
        .await?;
    if let Some(group) = args.group {
        if group.trim().is_empty() {
            return Err(ValidationError::new("group", &group, "must not be empty").into());
        }
        cluster.commit_sample_group(&args.topic, &group).await?;
        report.consumer_group = Some(group);
    }
    print_json(&report)
}
