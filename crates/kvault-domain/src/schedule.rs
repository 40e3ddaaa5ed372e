//! Backup schedules: continuous, incremental backups of a topic (or of a set of topics) on an
//! interval (`every: "15m"`) or a cron expression. Each run is an ordinary backup job that
//! continues the schedule's chain: `incremental_from` the last completed run, so the runs
//! cover the topic without gap or overlap (the first run, and any run after the chain's tip
//! was deleted, is a full backup). `retention` deletes a schedule's oldest runs, from the
//! chain's oldest end only (see [`crate::chain`]).
//!
//! Intervals are parsed by `humantime` ("90s", "15m", "1h 30m"); cron expressions by `croner`
//! (5 fields, or 6 with seconds first), evaluated in UTC.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::{BackupDefaults, BackupRequest};
use crate::compression::CompressionType;
use crate::error::ValidationError;
use crate::ids::{BackupId, ClusterId, ScheduleId};

/// The shortest interval a schedule may run at.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest `every` or `retention` accepted (ten years).
const MAX_SPAN: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// `POST /api/kafka/schedules`: what to back up, how often, and how long to keep the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Name the schedule (default: generated, `schedule-{millis}-{random}`). Its runs are
    /// backups named `{schedule_id}-{UTC time of the run}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
    )]
    pub schedule_id: Option<String>,
    /// Cluster id from the `clusters:` config.
    pub cluster_id: String,
    /// The topic to back up (or `topics` / `topic_pattern` for a backup set per run).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Matched again at every run: topics created later join the next run (fully).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_pattern: Option<String>,
    /// Run at this interval, e.g. `"15m"`, `"1h"` (at least the server's
    /// `schedules.min_interval_secs`, default one minute). The first run starts at once. Give
    /// `every` or `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Run when this cron expression matches, in UTC: 5 fields (`"*/15 * * * *"`) or 6 with
    /// seconds first. Two matches may not be closer than the server's minimum interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Delete runs that finished longer ago than this (e.g. `"7d"`), oldest first and never
    /// the latest run; default: keep them (the `backup.retention_days` sweep still applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    #[serde(default = "yes")]
    pub include_headers: bool,
    #[serde(default = "yes")]
    pub include_keys: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<u32>,
    /// Record consumer-group offsets at every run (default true), so a restore to any run can
    /// put the groups back.
    #[serde(default = "yes")]
    pub include_consumer_groups: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_groups: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// When a schedule's runs are due.
#[derive(Debug, Clone)]
pub enum Cadence {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

impl Cadence {
    /// The first run of a schedule created at `now`: at once for an interval, the next match
    /// for a cron expression.
    pub fn first_run(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Cadence::Every(_) => Some(now),
            Cadence::Cron(_) => self.next_after(now),
        }
    }

    /// The next due time strictly after `after` (`None`: the expression never matches again).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Cadence::Every(interval) => Some(after + chrono::Duration::from_std(*interval).ok()?),
            Cadence::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
        }
    }
}

/// How many upcoming matches of a cron expression are looked at to find its shortest gap.
const CRON_GAPS_CHECKED: usize = 1_000;

impl Cadence {
    /// The shortest time between two runs: the interval, or the shortest gap between the
    /// next matches of a cron expression after `from` (its first [`CRON_GAPS_CHECKED`]).
    pub fn shortest_gap(&self, from: DateTime<Utc>) -> Option<Duration> {
        match self {
            Cadence::Every(interval) => Some(*interval),
            Cadence::Cron(_) => {
                let mut at = self.next_after(from)?;
                let mut shortest: Option<Duration> = None;
                for _ in 0..CRON_GAPS_CHECKED {
                    let Some(next) = self.next_after(at) else {
                        break;
                    };
                    let gap = (next - at).to_std().unwrap_or_default();
                    shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
                    at = next;
                }
                shortest
            }
        }
    }
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct SchedulePlan {
    pub schedule_id: ScheduleId,
    pub cluster_id: ClusterId,
    pub cadence: Cadence,
    pub retention: Option<Duration>,
    /// The request as stored, with its id filled in.
    pub request: ScheduleRequest,
}

impl SchedulePlan {
    /// Refuses a cadence that runs more often than `floor` (the server's minimum interval):
    /// a 400 naming `every` or `cron`.
    pub fn check_floor(&self, floor: Duration, now: DateTime<Utc>) -> Result<(), ValidationError> {
        let Some(gap) = self.cadence.shortest_gap(now) else {
            return Ok(());
        };
        if gap >= floor {
            return Ok(());
        }
        let (field, value) = match (&self.request.every, &self.request.cron) {
            (Some(every), _) => ("every", every.clone()),
            (None, cron) => ("cron", cron.clone().unwrap_or_default()),
        };
        Err(ValidationError::new(
            field,
            value,
            format!(
                "runs every {} at times; schedules run at most once per {} on this server \
                 (schedules.min_interval_secs)",
                humantime::format_duration(gap),
                humantime::format_duration(floor)
            ),
        ))
    }
}

impl ScheduleRequest {
    /// Checks every field (the backup fields as a backup request would be checked).
    pub fn validate(
        &self,
        defaults: BackupDefaults,
        now: DateTime<Utc>,
    ) -> Result<SchedulePlan, ValidationError> {
        let schedule_id = match &self.schedule_id {
            Some(raw) => ScheduleId::parse(raw)?,
            None => ScheduleId::generate(now),
        };
        let cluster_id = ClusterId::parse(&self.cluster_id).map_err(|mut e| {
            e.field = "cluster_id".into();
            e
        })?;
        let cadence = self.cadence()?;
        let retention = self.retention_span()?;
        let mut request = self.clone();
        request.schedule_id = Some(schedule_id.to_string());
        // A run's backup request, checked now so a bad field fails the POST, not every run.
        let probe = request.run_request(run_backup_id(&schedule_id, now), None);
        if probe.is_set() {
            probe.validate_set(defaults, now)?;
        } else {
            probe.validate(defaults, now)?;
        }
        Ok(SchedulePlan {
            schedule_id,
            cluster_id,
            cadence,
            retention,
            request,
        })
    }

    /// `retention` as a span, if set.
    pub fn retention_span(&self) -> Result<Option<Duration>, ValidationError> {
        self.retention
            .as_deref()
            .map(|raw| parse_span("retention", raw))
            .transpose()
    }

    /// The cadence of a stored (already validated) request.
    pub fn cadence(&self) -> Result<Cadence, ValidationError> {
        match (&self.every, &self.cron) {
            (Some(every), None) => {
                let interval = parse_span("every", every)?;
                if interval < MIN_INTERVAL {
                    return Err(ValidationError::new("every", every, "must be at least 1s"));
                }
                Ok(Cadence::Every(interval))
            }
            (None, Some(expression)) => {
                let cron = croner::Cron::from_str(expression).map_err(|e| {
                    ValidationError::new(
                        "cron",
                        expression,
                        format!("is not a cron expression: {e}"),
                    )
                })?;
                Ok(Cadence::Cron(Box::new(cron)))
            }
            (Some(_), Some(cron)) => Err(ValidationError::new(
                "cron",
                cron,
                "give either every or cron, not both",
            )),
            (None, None) => Err(ValidationError::new(
                "every",
                "",
                "is required (or cron): how often the schedule runs",
            )),
        }
    }

    /// The backup request of one run: `backup_id`, continuing `parent` when there is one.
    pub fn run_request(&self, backup_id: BackupId, parent: Option<&BackupId>) -> BackupRequest {
        let mut request = BackupRequest::for_topic(self.topic.clone());
        request.topics = self.topics.clone();
        request.topic_pattern = self.topic_pattern.clone();
        request.compression = self.compression;
        request.compression_level = self.compression_level;
        request.include_headers = self.include_headers;
        request.include_keys = self.include_keys;
        request.rate_limit_per_second = self.rate_limit_per_second;
        request.include_consumer_groups = self.include_consumer_groups;
        request.consumer_groups = self.consumer_groups.clone();
        request.backup_id = Some(backup_id.to_string());
        request.incremental_from = parent.map(ToString::to_string);
        request
    }
}

/// The backup id of a run started at `at`: `{schedule_id}-{YYYYMMDDTHHMMSSmmmZ}`, which sorts
/// by time.
pub fn run_backup_id(schedule_id: &ScheduleId, at: DateTime<Utc>) -> BackupId {
    let stamp = at.format("%Y%m%dT%H%M%S%3fZ");
    BackupId::parse(&format!("{schedule_id}-{stamp}")).expect("a short id plus a stamp is valid")
}

fn parse_span(field: &str, raw: &str) -> Result<Duration, ValidationError> {
    let span = humantime::parse_duration(raw).map_err(|e| {
        ValidationError::new(
            field,
            raw.chars().take(64).collect::<String>(),
            format!("is not a duration like \"90s\", \"15m\", \"1h\" or \"7d\": {e}"),
        )
    })?;
    if span.is_zero() || span > MAX_SPAN {
        return Err(ValidationError::new(
            field,
            raw,
            "must be more than 0 and at most ten years",
        ));
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> Result<SchedulePlan, ValidationError> {
        serde_json::from_value::<ScheduleRequest>(json)
            .unwrap()
            .validate(BackupDefaults::default(), Utc::now())
    }

    #[test]
    fn intervals_and_cron_expressions_give_the_next_runs() {
        let now: DateTime<Utc> = "2026-11-29T10:07:30Z".parse().unwrap();
        let every =
            plan(serde_json::json!({"cluster_id": "local", "topic": "t", "every": "15m"})).unwrap();
        assert_eq!(every.cadence.first_run(now), Some(now));
        assert_eq!(
            every.cadence.next_after(now).unwrap().to_rfc3339(),
            "2026-11-29T10:22:30+00:00"
        );
        assert!(every.schedule_id.as_str().starts_with("schedule-"));
        let cron = plan(serde_json::json!({
            "schedule_id": "orders", "cluster_id": "local", "topic": "t", "cron": "*/15 * * * *"
        }))
        .unwrap();
        assert_eq!(
            cron.cadence.first_run(now).unwrap().to_rfc3339(),
            "2026-11-29T10:15:00+00:00"
        );
        assert_eq!(
            run_backup_id(&cron.schedule_id, now).as_str(),
            "orders-20261129T100730000Z"
        );
        let set =
            plan(serde_json::json!({"cluster_id": "c", "topic_pattern": "orders-.*", "every": "1h", "retention": "7d"}))
                .unwrap();
        assert_eq!(set.retention, Some(Duration::from_secs(7 * 24 * 3600)));
        let run = set
            .request
            .run_request(BackupId::parse("x-1").unwrap(), None);
        assert!(run.is_set());
    }

    #[test]
    fn bad_fields_are_named() {
        for (json, field) in [
            (
                serde_json::json!({"cluster_id": "c", "topic": "t"}),
                "every",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1m", "cron": "* * * * *"}),
                "cron",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "soon"}),
                "every",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "10ms"}),
                "every",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "cron": "61 * * * *"}),
                "cron",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1m", "retention": "0s"}),
                "retention",
            ),
            (
                serde_json::json!({"cluster_id": "c", "every": "1m"}),
                "topic",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "bad name", "every": "1m"}),
                "topic",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1m", "schedule_id": "../x"}),
                "schedule_id",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1m", "schedule_id": "a".repeat(101)}),
                "schedule_id",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1m", "compression_level": 99}),
                "compression_level",
            ),
        ] {
            assert_eq!(plan(json.clone()).unwrap_err().field, field, "{json}");
        }
    }

    #[test]
    fn a_cadence_more_frequent_than_the_floor_is_refused() {
        let floor = Duration::from_secs(60);
        let now = Utc::now();
        let checked = |json: serde_json::Value| plan(json).unwrap().check_floor(floor, now);
        for (json, field) in [
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1s"}),
                "every",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "every": "59s"}),
                "every",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "cron": "*/10 * * * * *"}),
                "cron",
            ),
            (
                serde_json::json!({"cluster_id": "c", "topic": "t", "cron": "0,30 0 * * * *"}),
                "cron",
            ),
        ] {
            assert_eq!(checked(json.clone()).unwrap_err().field, field, "{json}");
        }
        for json in [
            serde_json::json!({"cluster_id": "c", "topic": "t", "every": "1m"}),
            serde_json::json!({"cluster_id": "c", "topic": "t", "cron": "* * * * *"}),
            serde_json::json!({"cluster_id": "c", "topic": "t", "cron": "0 3 * * *"}),
        ] {
            assert!(checked(json.clone()).is_ok(), "{json}");
        }
    }
}
