//! Runs operations as jobs: admits them as `running` rows under this replica's lease (within
//! the concurrency limits, counted in the database so every replica shares them), runs them on
//! tokio tasks with an [`OperationControl`] for live progress and cancellation, and records
//! how they ended, retrying until the database takes it. `crate::engine::workers` renews the leases
//! and takes over the jobs of replicas that died. The jobs' own metrics (records processed,
//! durations, outcomes, refusals) are counted here, into [`Telemetry`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_domain::job::OperationControl;
use kvault_domain::{JobId, JobKind, JobProgress};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::engine::jobs::{
    Admission, Capacity, JobStore, JobTarget, JournalState, Lease, NewJob, RunClaim, StoredJournal,
};
use crate::engine::limits::refusal;
pub use crate::engine::limits::Limits;
use crate::error::ApiError;
use crate::telemetry::{JobLabels, Limit, Telemetry};

use crate::engine::outcome::ending;
pub use crate::engine::outcome::{stored_error, wait, JobOutcome};

mod end;

/// A job in flight in this process.
struct Live {
    control: OperationControl,
    labels: JobLabels,
    /// Messages and bytes already counted in the metrics.
    reported: (u64, u64),
    started: Instant,
    /// Cancelled through the API (as opposed to by a shutdown that hands the job over).
    cancelled_by_user: bool,
    /// Stopped because this replica no longer holds (or cannot renew) the job's lease: its
    /// end is not recorded here.
    abandoned: bool,
    /// When the lease was last renewed.
    renewed: Instant,
}

/// Starts jobs and answers questions about the ones in flight.
pub struct JobRunner {
    store: JobStore,
    lease: Lease,
    live: Mutex<HashMap<JobId, Live>>,
    /// Set by a graceful shutdown: jobs it cancels are handed over, not ended.
    handing_over: AtomicBool,
    /// Where jobs run: the process's main runtime, not the HTTP worker that accepted the
    /// request (each actix worker has a runtime of its own, dropped with the worker at
    /// shutdown, which would drop a job mid-flight instead of letting it finish or hand over).
    jobs: tokio::runtime::Handle,
    /// Bumped whenever this replica admits a job or records one's end, so cached monitoring
    /// figures know they are stale.
    changes: AtomicU64,
    telemetry: Arc<Telemetry>,
}

/// What to start.
pub struct JobSpec {
    pub kind: JobKind,
    pub cluster_id: Option<String>,
    /// The cluster a migration writes into.
    pub target_cluster_id: Option<String>,
    pub subject: String,
    pub request: serde_json::Value,
    pub backup_id: Option<String>,
}

impl JobRunner {
    /// A runner whose jobs run on `jobs` (call from the runtime that outlives the server),
    /// counting them in `telemetry`.
    pub fn new(
        store: JobStore,
        lease: Lease,
        jobs: tokio::runtime::Handle,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            store,
            lease,
            live: Mutex::new(HashMap::new()),
            handing_over: AtomicBool::new(false),
            jobs,
            changes: AtomicU64::new(0),
            telemetry,
        }
    }

    /// The job table.
    pub fn jobs(&self) -> &JobStore {
        &self.store
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// A number that changes whenever this replica admits or ends a job.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits the job (429 when `capacity` is full), then runs `op` on a task. The handle
    /// yields the outcome for a caller that waits.
    pub async fn start<F, Fut>(
        self: &Arc<Self>,
        spec: JobSpec,
        capacity: Option<Capacity>,
        op: F,
    ) -> Result<(JobId, JoinHandle<JobOutcome>), ApiError>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        self.start_with(spec, &[], capacity, None, op).await
    }

    /// [`Self::start`] for a scheduled run, admitted only together with `claim` (409 when the
    /// claim fails: the run was started elsewhere or is not due any more).
    pub async fn start_claimed<F, Fut>(
        self: &Arc<Self>,
        spec: JobSpec,
        capacity: Option<Capacity>,
        claim: Option<RunClaim>,
        op: F,
    ) -> Result<(JobId, JoinHandle<JobOutcome>), ApiError>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        self.start_with(spec, &[], capacity, claim, op).await
    }

    /// [`Self::start`] for a job that writes into the topics `targets` (a restore or a
    /// migration): 409 naming `target_topic` and the running job while another job writes
    /// into one of them, so a topic has one writer at a time across every replica.
    pub async fn start_writer<F, Fut>(
        self: &Arc<Self>,
        spec: JobSpec,
        targets: &[JobTarget],
        capacity: Capacity,
        op: F,
    ) -> Result<(JobId, JoinHandle<JobOutcome>), ApiError>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        self.start_with(spec, targets, Some(capacity), None, op)
            .await
    }

    async fn start_with<F, Fut>(
        self: &Arc<Self>,
        spec: JobSpec,
        targets: &[JobTarget],
        capacity: Option<Capacity>,
        claim: Option<RunClaim>,
        op: F,
    ) -> Result<(JobId, JoinHandle<JobOutcome>), ApiError>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        let id = JobId::new();
        let job = NewJob {
            id,
            kind: spec.kind,
            cluster_id: spec.cluster_id.clone(),
            target_cluster_id: spec.target_cluster_id,
            subject: spec.subject.clone(),
            request: spec.request,
            created_at: Utc::now(),
            backup_id: spec.backup_id.clone(),
        };
        let verdict = self
            .store
            .admit_writer(
                &job,
                targets,
                &self.lease,
                capacity.as_ref(),
                claim.as_ref(),
            )
            .await
            .map_err(ApiError::internal)?;
        if verdict.admission != Admission::Admitted {
            if verdict.admission == Admission::Full {
                self.telemetry.refusals(Limit::Concurrency(spec.kind)).inc();
            }
            return Err(refusal(&verdict, capacity.as_ref()));
        }
        self.changes.fetch_add(1, Ordering::SeqCst);
        tracing::info!(job_id = %id, kind = spec.kind.as_str(), cluster = ?spec.cluster_id, subject = %spec.subject, "job started");
        let labels = JobLabels::new(spec.kind, spec.cluster_id.as_deref());
        Ok((id, self.launch(id, labels, op)))
    }

    /// Runs `op` as job `id`, which this replica holds: the job admitted here, or one taken
    /// over from a replica that died and started over.
    pub fn launch<F, Fut>(
        self: &Arc<Self>,
        id: JobId,
        labels: JobLabels,
        op: F,
    ) -> JoinHandle<JobOutcome>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        self.launch_attempt(id, labels, (1, JournalState::default()), op)
    }

    /// [`Self::launch`] for attempt `attempt` of the job, whose journal holds `recorded`: the
    /// operation sees what earlier attempts recorded and records through the job's row.
    pub fn launch_attempt<F, Fut>(
        self: &Arc<Self>,
        id: JobId,
        labels: JobLabels,
        (attempt, recorded): (u64, JournalState),
        op: F,
    ) -> JoinHandle<JobOutcome>
    where
        F: FnOnce(OperationControl) -> Fut,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        let journal = StoredJournal::new(
            self.store.clone(),
            self.lease.owner.clone(),
            id,
            attempt,
            recorded,
        )
        .keeping_checkpoints(&self.jobs);
        let control = OperationControl::with_journal(Arc::new(journal));
        let started = Instant::now();
        self.live().insert(
            id,
            Live {
                control: control.clone(),
                labels,
                reported: (0, 0),
                started,
                cancelled_by_user: false,
                abandoned: false,
                renewed: started,
            },
        );
        let fut = op(control.clone());
        let runner = Arc::clone(self);
        // Every log line of the job (its operation, its adapters, its ending) carries the job
        // id: a span field, which `--log-format json` writes on each line.
        let span = tracing::info_span!("job", job_id = %id);
        self.jobs.spawn(
            async move {
                let outcome = fut.await;
                runner.record_end(id, &control, started, &outcome).await;
                outcome
            }
            .instrument(span),
        )
    }

    /// Live progress of a job running in this process.
    pub fn progress(&self, id: JobId) -> Option<JobProgress> {
        self.live()
            .get(&id)
            .map(|l| l.control.snapshot(l.started.elapsed().as_secs_f64()))
    }

    /// Adds what every job running here moved since the last call to the processed-records
    /// and -bytes counters.
    pub fn flush_progress(&self) {
        let mut live = self.live();
        for l in live.values_mut() {
            let now = (l.control.messages(), l.control.bytes());
            let (records, bytes) = (
                now.0.saturating_sub(l.reported.0),
                now.1.saturating_sub(l.reported.1),
            );
            l.reported = (l.reported.0.max(now.0), l.reported.1.max(now.1));
            if records > 0 || bytes > 0 {
                self.telemetry.jobs.processed(&l.labels, records, bytes);
            }
        }
    }

    /// The operation and cluster of every job running here.
    pub fn in_flight(&self) -> Vec<JobLabels> {
        self.live().values().map(|l| l.labels.clone()).collect()
    }

    /// Progress of every job running here, for the lease heartbeat.
    pub fn snapshots(&self) -> Vec<(JobId, JobProgress)> {
        self.live()
            .iter()
            .map(|(id, l)| (*id, l.control.snapshot(l.started.elapsed().as_secs_f64())))
            .collect()
    }

    /// Asks a running job to stop; false when it is not running here.
    pub fn cancel(&self, id: JobId) -> bool {
        match self.live().get_mut(&id) {
            Some(l) => {
                l.cancelled_by_user = true;
                l.control.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops a job this replica lost (another replica holds it now): it ends here without
    /// recording anything, since its owner records the end.
    pub fn abandon(&self, id: JobId) {
        if let Some(l) = self.live().get_mut(&id) {
            tracing::warn!(job_id = %id, "lost the lease of a running job; stopping it here");
            l.abandoned = true;
            l.control.hand_over();
        }
    }

    /// Notes a successful lease renewal of job `id`, sent at `sent`.
    pub fn renewed(&self, id: JobId, sent: Instant) {
        if let Some(l) = self.live().get_mut(&id) {
            l.renewed = l.renewed.max(sent);
        }
    }

    /// How long ago job `id`'s lease was last renewed.
    pub fn since_renewal(&self, id: JobId) -> Option<Duration> {
        self.live().get(&id).map(|l| l.renewed.elapsed())
    }

    /// Starts handing jobs over: from now on a job cancelled by [`Self::cancel_all`] releases
    /// its lease instead of ending.
    pub fn hand_over(&self) {
        self.handing_over.store(true, Ordering::SeqCst);
    }

    pub fn is_handing_over(&self) -> bool {
        self.handing_over.load(Ordering::SeqCst)
    }

    /// Cancels every job running here to hand it over (shutdown): what it wrote stays for
    /// the replica that continues it.
    pub fn cancel_all(&self) {
        for l in self.live().values() {
            l.control.hand_over();
        }
    }

    /// Jobs running in this process.
    pub fn live_count(&self) -> usize {
        self.live().len()
    }
}
