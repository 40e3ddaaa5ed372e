//! `kvault drain`: the same request and result as `POST /clusters/{id}/drain`. Exits 0 when the
//! group drained and 6 when the timeout passed first, so a deploy script can gate on it.

use kvault_domain::drain::DrainStatus;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::DrainPlan;
use kvault_domain::{ClusterId, DrainRequest};

use super::print_json;
use crate::cli::DrainArgs;
use crate::context::Context;
use crate::exit::{CliError, EXIT_DRAIN_TIMEOUT};
use crate::progress::Progress;

pub async fn run(context: &Context, args: DrainArgs) -> Result<(), CliError> {
    let request = DrainRequest {
        group_id: args.group_id,
        topics: args.topics,
        max_lag: args.max_lag,
        timeout_seconds: args.timeout_seconds,
        check_interval_ms: args.check_interval_ms,
        strategy: args.strategy.into(),
    };
    let plan = DrainPlan::new(request)?;
    let name = context.cluster_name(args.cluster, "--cluster")?;
    let cluster = ClusterId::parse(&name)?;
    let engine = context.engine(&[&name], context.archives()?).await?;
    let control = OperationControl::new();
    let label = format!("drain {} (starting lag consumed)", plan.request.group_id);
    let progress = Progress::start(context.progress, label, control.clone());
    let result = engine.drain(&cluster, plan, control).await?;
    drop(progress);
    print_json(&result)?;
    match result.status {
        DrainStatus::Drained => Ok(()),
        DrainStatus::Timeout => Err(CliError::new(
            EXIT_DRAIN_TIMEOUT,
            format!(
                "group '{}' still has a lag of {} after {} ms",
                result.group_id, result.total_lag, result.duration_ms
            ),
        )),
    }
}
