//! `kvault topics` and `kvault groups`: what is on a cluster, before backing it up or draining
//! a group: its topics with their partition counts, and its consumer groups.

use serde::Serialize;

use super::print_json;
use crate::cli::ClusterArg;
use crate::context::Context;
use crate::exit::CliError;

#[derive(Debug, Serialize)]
struct TopicList {
    cluster_id: String,
    topics: Vec<TopicEntry>,
}

#[derive(Debug, Serialize)]
struct TopicEntry {
    topic: String,
    partition_count: i32,
    replication_factor: i16,
}

#[derive(Debug, Serialize)]
struct GroupList {
    cluster_id: String,
    groups: Vec<String>,
}

pub async fn topics(context: &Context, args: ClusterArg) -> Result<(), CliError> {
    let name = context.cluster_name(args.cluster, "--cluster")?;
    let admin = context.cluster(&name).await?.admin()?;
    let mut topics = Vec::new();
    for topic in admin.list_topics().await? {
        // A topic deleted between the two requests is simply not listed.
        if let Some(info) = admin.topic(&topic).await? {
            topics.push(TopicEntry {
                topic,
                partition_count: info.partition_count(),
                replication_factor: info.replication_factor,
            });
        }
    }
    print_json(&TopicList {
        cluster_id: name,
        topics,
    })
}

pub async fn groups(context: &Context, args: ClusterArg) -> Result<(), CliError> {
    let name = context.cluster_name(args.cluster, "--cluster")?;
    let groups = context.cluster(&name).await?.admin()?.list_groups().await?;
    print_json(&GroupList {
        cluster_id: name,
        groups,
    })
}
