//! Prometheus metrics, in Prometheus conventions (base units, `_total` counters, histograms).
//!
//! Two kinds of figures, kept apart because several replicas may share one database:
//! - **Counted by this process** ([`Telemetry`], registered once): the jobs this replica ran
//!   (records and bytes processed, durations, outcomes), the HTTP requests it answered, the
//!   requests and jobs its limits refused. Each replica exports its own; Prometheus sums them.
//! - **The same on every replica** ([`snapshot`], built per scrape): figures read from the
//!   shared job table and archive store (jobs by kind and state, archive bytes and the last
//!   successful backup per topic), the jobs in flight here, and consumer-group lag.
//!
//! The `prometheus` crate does the registry, histograms and the text exposition format (0.0.4,
//! what `/metrics` has always served); see docs/api.md for why that crate.

pub mod figures;
pub mod http;
pub mod lag;
pub mod snapshot;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kvault_domain::{JobKind, JobState};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub use http::HttpMetrics;

/// Running totals of retention deletions, for `/metrics/prometheus`.
#[derive(Debug, Default)]
pub struct RetentionCounters {
    pub deleted: AtomicU64,
    pub failed: AtomicU64,
}

/// Every operation kind, for label presets.
pub const KINDS: [JobKind; 5] = [
    JobKind::Backup,
    JobKind::Restore,
    JobKind::Migrate,
    JobKind::Drain,
    JobKind::Verify,
];

/// The ways a job ends.
const ENDINGS: [JobState; 4] = [
    JobState::Completed,
    JobState::Failed,
    JobState::Cancelled,
    JobState::Interrupted,
];

/// Job durations, seconds: from a small backup to a long migration.
const JOB_DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 43200.0,
];

/// What a job's metrics are labelled by: `operation` and `cluster` (the source cluster of a
/// migration; empty for a job on no cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobLabels {
    pub kind: JobKind,
    pub cluster: String,
}

impl JobLabels {
    pub fn new(kind: JobKind, cluster: Option<&str>) -> Self {
        Self {
            kind,
            cluster: cluster.unwrap_or_default().to_owned(),
        }
    }
}

/// Which limit refused: a token subject's request rate, an address's rate (requests without
/// a valid token), or a concurrency limit at job admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Subject,
    Address,
    Concurrency(JobKind),
}

/// This process's counters, registered in one registry.
pub struct Telemetry {
    registry: Registry,
    pub jobs: JobMetrics,
    pub http: HttpMetrics,
    refusals: IntCounterVec,
}

/// The jobs this replica ran.
#[derive(Clone)]
pub struct JobMetrics {
    records: IntCounterVec,
    bytes: IntCounterVec,
    durations: HistogramVec,
    finished: IntCounterVec,
    failures: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric names are unique");
    vec
}

impl Telemetry {
    /// The registry with every series a dashboard needs present from the start (at 0): each
    /// operation's outcomes on each of `clusters`, every limit's refusals.
    pub fn new(clusters: &[String]) -> Self {
        let registry = Registry::new();
        let op_cluster = ["operation", "cluster"];
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "kvault_job_duration_seconds",
                "Duration of the jobs this replica ran, by how they ended.",
            )
            .buckets(JOB_DURATION_BUCKETS.to_vec()),
            &["operation", "cluster", "outcome"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(durations.clone()))
            .expect("metric names are unique");
        let jobs = JobMetrics {
            records: counter(
                &registry,
                "kvault_records_processed_total",
                "Records read or written by the jobs this replica ran (drains excepted).",
                &op_cluster,
            ),
            bytes: counter(
                &registry,
                "kvault_bytes_processed_total",
                "Record bytes read or written by the jobs this replica ran (drains excepted).",
                &op_cluster,
            ),
            durations,
            finished: counter(
                &registry,
                "kvault_jobs_finished_total",
                "Jobs whose end this replica recorded, by outcome.",
                &["operation", "cluster", "outcome"],
            ),
            failures: counter(
                &registry,
                "kvault_job_failures_total",
                "Failed jobs whose end this replica recorded, by error kind (the error body's `error`).",
                &["operation", "cluster", "error_kind"],
            ),
        };
        let refusals = counter(
            &registry,
            "kvault_rate_limit_refusals_total",
            "Requests refused with 429 by a limit: `subject` (requests_per_minute), `address` \
             (anonymous_requests_per_minute), `concurrency` (a job limit; `operation` says which).",
            &["limit", "operation"],
        );
        let http = HttpMetrics::register(&registry);
        let telemetry = Self {
            registry,
            jobs,
            http,
            refusals,
        };
        for cluster in clusters {
            for kind in KINDS {
                let labels = JobLabels::new(kind, Some(cluster));
                telemetry.jobs.preset(&labels);
            }
        }
        for limit in [Limit::Subject, Limit::Address]
            .into_iter()
            .chain(KINDS.map(Limit::Concurrency))
        {
            telemetry.refusals(limit);
        }
        telemetry
    }

    /// The counter of refusals by `limit` (a handle sharing the registered series).
    pub fn refusals(&self, limit: Limit) -> IntCounter {
        let (name, operation) = match limit {
            Limit::Subject => ("subject", ""),
            Limit::Address => ("address", ""),
            Limit::Concurrency(kind) => ("concurrency", kind.as_str()),
        };
        self.refusals.with_label_values(&[name, operation])
    }

    /// This process's series, followed by `more` (the per-scrape figures), as Prometheus text.
    pub fn encode(&self, more: Vec<prometheus::proto::MetricFamily>) -> String {
        let mut families = more;
        families.extend(self.registry.gather());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl JobMetrics {
    fn preset(&self, job: &JobLabels) {
        let (op, cluster) = (job.kind.as_str(), job.cluster.as_str());
        if job.kind != JobKind::Drain {
            self.records.with_label_values(&[op, cluster]);
            self.bytes.with_label_values(&[op, cluster]);
        }
        for state in ENDINGS {
            self.finished
                .with_label_values(&[op, cluster, state.as_str()]);
        }
    }

    /// Records and bytes a job moved since it last reported (a drain's "messages" is a level,
    /// not work done, so drains are not counted).
    pub fn processed(&self, job: &JobLabels, records: u64, bytes: u64) {
        if job.kind == JobKind::Drain {
            return;
        }
        let labels = [job.kind.as_str(), job.cluster.as_str()];
        self.records.with_label_values(&labels).inc_by(records);
        self.bytes.with_label_values(&labels).inc_by(bytes);
    }

    /// A job's end as this replica recorded it: its outcome, its error kind when it failed,
    /// and its duration when it ran here.
    pub fn ended(
        &self,
        job: &JobLabels,
        state: JobState,
        error_kind: Option<&str>,
        duration: Option<Duration>,
    ) {
        let (op, cluster) = (job.kind.as_str(), job.cluster.as_str());
        self.finished
            .with_label_values(&[op, cluster, state.as_str()])
            .inc();
        if let (JobState::Failed | JobState::Interrupted, Some(kind)) = (state, error_kind) {
            self.failures.with_label_values(&[op, cluster, kind]).inc();
        }
        if let Some(d) = duration {
            self.durations
                .with_label_values(&[op, cluster, state.as_str()])
                .observe(d.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_a_dashboard_needs_exist_from_the_start() {
        let t = Telemetry::new(&["local".to_owned()]);
        let text = t.encode(Vec::new());
        for line in [
            "kvault_jobs_finished_total{cluster=\"local\",operation=\"backup\",outcome=\"failed\"} 0",
            "kvault_records_processed_total{cluster=\"local\",operation=\"restore\"} 0",
            "kvault_rate_limit_refusals_total{limit=\"concurrency\",operation=\"migrate\"} 0",
            "kvault_rate_limit_refusals_total{limit=\"address\",operation=\"\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // A drain moves no records: it has no such series.
        assert!(
            !text.contains("kvault_records_processed_total{cluster=\"local\",operation=\"drain\"}")
        );
    }

    #[test]
    fn a_job_end_counts_its_outcome_error_kind_and_duration() {
        let t = Telemetry::new(&[]);
        let job = JobLabels::new(JobKind::Backup, Some("prod"));
        t.jobs.processed(&job, 10, 1000);
        t.jobs.ended(
            &job,
            JobState::Failed,
            Some("KafkaUnavailable"),
            Some(Duration::from_millis(1500)),
        );
        t.refusals(Limit::Subject).inc();
        let text = t.encode(Vec::new());
        for line in [
            "kvault_records_processed_total{cluster=\"prod\",operation=\"backup\"} 10",
            "kvault_bytes_processed_total{cluster=\"prod\",operation=\"backup\"} 1000",
            "kvault_jobs_finished_total{cluster=\"prod\",operation=\"backup\",outcome=\"failed\"} 1",
            "kvault_job_failures_total{cluster=\"prod\",error_kind=\"KafkaUnavailable\",operation=\"backup\"} 1",
            "kvault_job_duration_seconds_bucket{cluster=\"prod\",operation=\"backup\",outcome=\"failed\",le=\"2.5\"} 1",
            "kvault_job_duration_seconds_bucket{cluster=\"prod\",operation=\"backup\",outcome=\"failed\",le=\"1\"} 0",
            "kvault_job_duration_seconds_sum{cluster=\"prod\",operation=\"backup\",outcome=\"failed\"} 1.5",
            "kvault_rate_limit_refusals_total{limit=\"subject\",operation=\"\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
