//! A replica's background work on the shared job table: renewing the leases of the jobs it
//! runs (writing their progress as it goes), stopping a job whose lease another replica took,
//! taking over jobs whose replica died, and handing its own jobs over on shutdown.

use std::sync::Arc;

use std::time::{Duration, Instant};

use crate::engine::state::EngineState;
use crate::engine::takeover;

/// Renews, then looks for expired leases, every `workers.heartbeat_secs`, until the task is
/// dropped.
pub(crate) async fn lease_loop(state: Arc<EngineState>) {
    let mut tick = tokio::time::interval(state.settings.workers.heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        renew_all(&state).await;
        if !state.runner.is_handing_over() {
            take_over_expired(&state).await;
        }
    }
}

async fn renew_all(state: &EngineState) {
    let runner = &state.runner;
    for (id, progress) in runner.snapshots() {
        // The lease runs from when the database took the renewal, which is after it was sent:
        // counting from the send keeps this replica's idea of its lease on the safe side
        // without comparing its clock with the database's.
        let sent = Instant::now();
        match runner.jobs().renew(runner.lease(), id, progress).await {
            Ok(true) => runner.renewed(id, sent),
            Ok(false) => runner.abandon(id),
            // The database is away. Within the lease the job goes on; past it another replica
            // may take the job over as soon as the database is back, so stop here rather than
            // write next to it.
            Err(e) => {
                let ttl = runner.lease().ttl;
                if runner.since_renewal(id).is_some_and(|ago| ago >= ttl) {
                    runner.abandon(id);
                } else {
                    tracing::warn!(job_id = %id, error = %e, "could not renew a job's lease");
                }
            }
        }
    }
}

async fn take_over_expired(state: &Arc<EngineState>) {
    let runner = &state.runner;
    while runner.live_count() < state.settings.workers.max_jobs {
        match runner.jobs().claim_expired(runner.lease()).await {
            Ok(Some(job)) => takeover::resume(state.clone(), job).await,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for jobs to take over");
                break;
            }
        }
    }
}

/// Graceful shutdown: stop taking jobs over, give running jobs `grace` to finish, then cancel
/// the rest and hand them over (their leases released so another replica resumes them at
/// once). Returns within `grace` plus a few seconds.
pub(crate) async fn hand_over(state: &EngineState, grace: Duration) {
    let runner = &state.runner;
    runner.hand_over();
    let deadline = Instant::now() + grace;
    while runner.live_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = runner.live_count();
    if left == 0 {
        return;
    }
    tracing::warn!(
        jobs = left,
        "shutdown: handing running jobs over to other replicas"
    );
    runner.cancel_all();
    let deadline = Instant::now() + Duration::from_secs(5);
    while runner.live_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
