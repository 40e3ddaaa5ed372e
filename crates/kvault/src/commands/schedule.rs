//! `kvault schedule`: backup schedules in the configured database, the same rows
//! `/api/kafka/schedules` shows. The CLI only records them; `kvault serve` runs them.

use chrono::Utc;
use kvault_api::jobs::{JobStore, NewSchedule};
use kvault_api::routes::schedules::{describe, latest_backup, DeletedSchedule, ScheduleList};
use kvault_domain::schedule::ScheduleRequest;

use super::print_json;
use crate::cli::{ScheduleAction, ScheduleArgs, ScheduleCreateArgs};
use crate::context::Context;
use crate::exit::{CliError, EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_UNAVAILABLE};

/// Who the CLI creates schedules as (the API records the token's subject).
const CLI_SUBJECT: &str = "cli";

pub async fn run(context: &Context, args: ScheduleArgs) -> Result<(), CliError> {
    let jobs = job_store(context).await?;
    match args.action {
        ScheduleAction::Create(args) => create(context, &jobs, *args).await,
        ScheduleAction::List => {
            let mut schedules = Vec::new();
            for stored in jobs.schedules().await.map_err(unavailable)? {
                schedules.push(describe(&jobs, stored).await.map_err(unavailable)?);
            }
            print_json(&ScheduleList { schedules })
        }
        ScheduleAction::Show(args) => {
            let stored = jobs
                .schedule(&args.schedule_id)
                .await
                .map_err(unavailable)?;
            let stored = stored.ok_or_else(|| not_found(&args.schedule_id))?;
            print_json(&describe(&jobs, stored).await.map_err(unavailable)?)
        }
        ScheduleAction::Delete(args) => {
            if !jobs
                .delete_schedule(&args.schedule_id)
                .await
                .map_err(unavailable)?
            {
                return Err(not_found(&args.schedule_id));
            }
            print_json(&DeletedSchedule {
                schedule_id: args.schedule_id,
                deleted: true,
            })
        }
    }
}

async fn create(
    context: &Context,
    jobs: &JobStore,
    args: ScheduleCreateArgs,
) -> Result<(), CliError> {
    let request = ScheduleRequest {
        schedule_id: args.schedule_id,
        cluster_id: args.cluster,
        topic: args.topic,
        topics: args.topics,
        topic_pattern: args.topic_pattern,
        every: args.every,
        cron: args.cron,
        retention: args.retention,
        compression: args.compression,
        compression_level: args.compression_level,
        include_headers: args.include_headers,
        include_keys: args.include_keys,
        rate_limit_per_second: args.rate_limit_per_second,
        include_consumer_groups: args.include_consumer_groups,
        consumer_groups: args.consumer_groups,
    };
    let now = Utc::now();
    let plan = request.validate(context.settings.backup.request_defaults(), now)?;
    // The cluster must be configured, and a named topic must exist on it.
    let cluster = &plan.cluster_id;
    let engine = context
        .engine(&[cluster.as_str()], context.archives()?)
        .await?;
    let topic = &plan.request.topic;
    if !topic.is_empty() && !engine.topic_exists(cluster, topic).await? {
        return Err(CliError::new(
            EXIT_NOT_FOUND,
            format!("topic '{topic}' does not exist on cluster '{cluster}'"),
        ));
    }
    let new = NewSchedule::planned(&plan, CLI_SUBJECT, now);
    if !jobs.create_schedule(&new).await.map_err(unavailable)? {
        return Err(CliError::new(
            EXIT_CONFLICT,
            format!("schedule '{}' already exists", new.id),
        ));
    }
    let stored = jobs.schedule(new.id.as_str()).await.map_err(unavailable)?;
    let stored = stored.ok_or_else(|| not_found(new.id.as_str()))?;
    print_json(&describe(jobs, stored).await.map_err(unavailable)?)
}

async fn job_store(context: &Context) -> Result<JobStore, CliError> {
    let database = &context.settings.database;
    JobStore::connect(database.url.expose(), database.max_connections)
        .await
        .map_err(unavailable)
}

/// The backup id of the newest completed run of `schedule_id`, for `kvault restore
/// --schedule-id` (restoring it restores the schedule's whole chain).
pub async fn latest_run(context: &Context, schedule_id: &str) -> Result<String, CliError> {
    let jobs = job_store(context).await?;
    if jobs
        .schedule(schedule_id)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(not_found(schedule_id));
    }
    latest_backup(&jobs, schedule_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            CliError::new(
                EXIT_NOT_FOUND,
                format!("schedule '{schedule_id}' has no completed run yet"),
            )
        })
}

fn not_found(id: &str) -> CliError {
    CliError::new(EXIT_NOT_FOUND, format!("schedule '{id}' not found"))
}

fn unavailable(e: impl std::fmt::Display) -> CliError {
    CliError::new(EXIT_UNAVAILABLE, format!("job database: {e}"))
}
