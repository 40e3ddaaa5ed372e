//! The figures built afresh for every scrape, so a series that no longer exists (a deleted
//! topic's archives, a partition a group left) disappears instead of lingering:
//! - from the shared job table and archive store, the same on every replica: the documented
//!   summary, `kvault_jobs{kind,state}`, and per topic the archive bytes stored, the backups
//!   stored and when the last one finished;
//! - kept by this process: retention and refresh counters, the jobs in flight here;
//! - the last consumer-lag reading of every group in `monitoring.groups`.

use prometheus::core::{Collector, GenericCounter, GenericGauge};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::telemetry::figures::{FiguresCache, MetricsSnapshot};
use crate::telemetry::lag::LagBoard;
use crate::telemetry::{JobLabels, RetentionCounters, KINDS};

/// A registry for one scrape.
struct Scrape(Registry);

impl Scrape {
    fn add<C: Collector + Clone + 'static>(&self, metric: C) -> C {
        if let Err(e) = self.0.register(Box::new(metric.clone())) {
            tracing::error!(error = %e, "metric not registered");
        }
        metric
    }

    fn gauge(&self, name: &str, help: &str, value: f64) {
        if let Ok(g) = GenericGauge::with_opts(Opts::new(name, help)) {
            self.add::<prometheus::Gauge>(g).set(value);
        }
    }

    fn int_gauge(&self, name: &str, help: &str, value: u64) {
        if let Ok(g) = GenericGauge::with_opts(Opts::new(name, help)) {
            self.add::<prometheus::IntGauge>(g)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    fn counter(&self, name: &str, help: &str, value: u64) {
        if let Ok(c) = GenericCounter::with_opts(Opts::new(name, help)) {
            self.add::<prometheus::IntCounter>(c).inc_by(value);
        }
    }

    fn int_gauges(&self, name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
        IntGaugeVec::new(Opts::new(name, help), labels)
            .ok()
            .map(|v| self.add(v))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> Option<GaugeVec> {
        GaugeVec::new(Opts::new(name, help), labels)
            .ok()
            .map(|v| self.add(v))
    }
}

/// What this replica keeps itself, as one scrape reads it.
pub(crate) struct Local<'a> {
    /// The configured clusters, so every operation on each shows 0 when idle.
    pub clusters: Vec<&'a str>,
    /// The jobs running here.
    pub in_flight: Vec<JobLabels>,
    pub retention: &'a RetentionCounters,
    pub figures: &'a FiguresCache,
    pub lag: &'a LagBoard,
}

/// This scrape's families.
pub(crate) fn families(state: &Local<'_>, figures: &MetricsSnapshot) -> Vec<MetricFamily> {
    let scrape = Scrape(Registry::new());
    summary(&scrape, figures);
    let counters = [
        (
            "kvault_retention_deletions_total",
            "Backups deleted by the retention sweep since start.",
            &state.retention.deleted,
        ),
        (
            "kvault_retention_failures_total",
            "Expired backups the retention sweep could not delete since start.",
            &state.retention.failed,
        ),
        (
            "kvault_metrics_refreshes_total",
            "Times these figures were computed since start (shared by concurrent scrapes).",
            state.figures.refresh_counter(),
        ),
    ];
    for (name, help, value) in counters {
        scrape.counter(name, help, value.load(std::sync::atomic::Ordering::Relaxed));
    }
    archives(&scrape, figures);
    in_flight(&scrape, state);
    lag(&scrape, state);
    scrape.0.gather()
}

/// The `/api/kafka/metrics` figures, and the job table's counts.
fn summary(scrape: &Scrape, figures: &MetricsSnapshot) {
    let m = &figures.summary;
    for (name, help, value) in [
        (
            "kvault_active_backups",
            "Backups running now.",
            m.active_backups,
        ),
        (
            "kvault_active_restores",
            "Restores running now.",
            m.active_restores,
        ),
        (
            "kvault_active_migrations",
            "Migrations running now.",
            m.active_migrations,
        ),
        (
            "kvault_completed_backups_today",
            "Backups completed since 00:00 UTC.",
            m.completed_backups_today,
        ),
        (
            "kvault_backups_stored",
            "Finished backups in the archive store.",
            m.total_backups,
        ),
        (
            "kvault_backup_size_bytes",
            "Compressed bytes of all stored backups.",
            figures.archives.compressed_bytes,
        ),
        (
            "kvault_backup_duration_ms_average",
            "Mean duration of completed backups.",
            m.average_backup_duration_ms,
        ),
    ] {
        scrape.int_gauge(name, help, value);
    }
    scrape.gauge(
        "kvault_compression_savings_percent",
        "Space saved by compression over all stored backups.",
        m.compression_savings_percent,
    );
    scrape.gauge(
        "kvault_backup_error_rate_percent",
        "Failed share of ended backup jobs.",
        m.error_rate_percent,
    );
    if let Some(jobs) = scrape.int_gauges(
        "kvault_jobs",
        "Jobs in the job store by kind and state (every replica's).",
        &["kind", "state"],
    ) {
        for g in &figures.jobs.groups {
            jobs.with_label_values(&[g.kind.as_str(), g.state.as_str()])
                .set(g.count);
        }
    }
}

/// Per topic, from the archive store.
fn archives(scrape: &Scrape, figures: &MetricsSnapshot) {
    let labels = ["cluster", "topic"];
    let (Some(bytes), Some(count), Some(last)) = (
        scrape.int_gauges(
            "kvault_archive_stored_bytes",
            "Compressed bytes of the stored backups of a topic.",
            &labels,
        ),
        scrape.int_gauges(
            "kvault_archive_backups",
            "Stored backups of a topic.",
            &labels,
        ),
        scrape.int_gauges(
            "kvault_backup_last_success_timestamp_seconds",
            "When the newest stored backup of a topic finished (Unix seconds).",
            &labels,
        ),
    ) else {
        return;
    };
    for ((cluster, topic), t) in &figures.archives.topics {
        let key = [cluster.as_str(), topic.as_str()];
        bytes
            .with_label_values(&key)
            .set(i64::try_from(t.compressed_bytes).unwrap_or(i64::MAX));
        count
            .with_label_values(&key)
            .set(i64::try_from(t.backups).unwrap_or(i64::MAX));
        last.with_label_values(&key)
            .set(t.last_finished_at.timestamp());
    }
}

/// Jobs running in this process, 0 for every operation on every configured cluster.
fn in_flight(scrape: &Scrape, state: &Local<'_>) {
    let Some(gauge) = scrape.int_gauges(
        "kvault_jobs_in_flight",
        "Jobs running in this replica.",
        &["operation", "cluster"],
    ) else {
        return;
    };
    for cluster in &state.clusters {
        for kind in KINDS {
            gauge.with_label_values(&[kind.as_str(), cluster]).set(0);
        }
    }
    for JobLabels { kind, cluster } in &state.in_flight {
        gauge.with_label_values(&[kind.as_str(), cluster]).inc();
    }
}

/// The last lag reading of every watched group.
fn lag(scrape: &Scrape, state: &Local<'_>) {
    let partition_labels = ["cluster", "group", "topic", "partition"];
    let group_labels = ["cluster", "group"];
    let (Some(records), Some(seconds), Some(refreshed), Some(failures)) = (
        scrape.int_gauges(
            "kvault_consumer_group_lag_records",
            "Records a consumer group has yet to consume on a partition (high watermark minus committed offset).",
            &partition_labels,
        ),
        scrape.gauges(
            "kvault_consumer_group_lag_seconds",
            "Age of the next record a consumer group has yet to consume (read time minus its timestamp); 0 when caught up.",
            &partition_labels,
        ),
        scrape.gauges(
            "kvault_consumer_group_lag_refreshed_timestamp_seconds",
            "When a consumer group's lag was last read successfully (Unix seconds).",
            &group_labels,
        ),
        IntCounterVec::new(
            Opts::new(
                "kvault_consumer_group_lag_refresh_failures_total",
                "Failed reads of a consumer group's lag since start.",
            ),
            &group_labels,
        )
        .ok()
        .map(|c| scrape.add(c)),
    ) else {
        return;
    };
    for ((cluster, group), status) in state.lag.statuses() {
        let key = [cluster.as_str(), group.as_str()];
        failures.with_label_values(&key).inc_by(status.failures);
        if let Some(at) = status.refreshed_at {
            refreshed
                .with_label_values(&key)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
        let Some(reading) = status.reading else {
            continue;
        };
        for p in &reading.partitions {
            let partition = p.partition.to_string();
            let labels = [cluster.as_str(), group.as_str(), &p.topic, &partition];
            records.with_label_values(&labels).set(p.lag_records());
            if let Some(s) = p.lag_seconds(reading.read_at) {
                seconds.with_label_values(&labels).set(s);
            }
        }
    }
}
