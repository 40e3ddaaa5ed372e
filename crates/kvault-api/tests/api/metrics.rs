//! Prometheus metrics: what jobs, requests and limits count, the per-topic archive figures,
//! consumer lag from `monitoring.groups`, and that every metric the shipped Grafana dashboard
//! and alert rules use is exported.

use std::collections::BTreeSet;
use std::time::Duration;

use kvault_api::auth::Role;
use kvault_api::configuration::{MonitoredGroup, Settings};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

fn watch(settings: &mut Settings, group: &str) {
    settings.monitoring.interval_secs = 1;
    settings.monitoring.groups = vec![MonitoredGroup {
        cluster: "local".into(),
        group: group.into(),
        topics: vec![],
    }];
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

/// Scrapes until a line starts with `prefix` (the lag monitor reads every second).
async fn scrape_until(app: &TestApp, prefix: &str) -> String {
    for _ in 0..100 {
        let text = scrape(app).await;
        if text.lines().any(|l| l.starts_with(prefix)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no line starting with {prefix} after 10 s");
}

/// The value of the sample `series` (name and labels exactly as exported).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .parse()
        .unwrap()
}

/// A backup that fails inside its job (an unknown partition); its error code.
async fn failed_backup(app: &TestApp, topic: &str) -> String {
    let resp = app
        .post(
            "/api/kafka/clusters/local/backup",
            Role::Operator,
            &json!({"topic": topic, "partitions": [7]}),
        )
        .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let body: Value = resp.json().await.unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn jobs_requests_archives_and_lag_are_counted() {
    let app = spawn_app_with(|s| watch(s, "billing")).await;
    let topic = app.unique_topic("metrics");
    let fake = app.fake();
    fake.create_topic("local", &topic, 1);
    // Ten records produced two minutes ago; the group consumed four.
    let produced_ms = chrono::Utc::now().timestamp_millis() - 120_000;
    let values: Vec<Vec<u8>> = (0..10).map(|i| format!("v{i}").into_bytes()).collect();
    let records: Vec<_> = values.iter().map(|v| (None, Some(&v[..]))).collect();
    fake.produce_at("local", &topic, produced_ms, &records);
    fake.commit("local", "billing", &topic, 0, 4);

    let backup = app.completed_backup(&topic).await;
    let error = failed_backup(&app, &topic).await;
    let missing = app
        .client
        .get(app.url("/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    let lag = format!(
        "kvault_consumer_group_lag_records{{cluster=\"local\",group=\"billing\",partition=\"0\",topic=\"{topic}\"}}"
    );
    let text = scrape_until(&app, &lag).await;
    let backup_of = |name: &str| format!("{name}{{cluster=\"local\",operation=\"backup\"}}");
    assert_eq!(
        value(&text, &backup_of("kvault_records_processed_total")),
        10.0
    );
    assert!(value(&text, &backup_of("kvault_bytes_processed_total")) > 0.0);
    let ended = |outcome: &str| {
        format!("kvault_jobs_finished_total{{cluster=\"local\",operation=\"backup\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(value(&text, &ended("completed")), 1.0);
    assert_eq!(value(&text, &ended("failed")), 1.0);
    assert_eq!(value(&text, &ended("cancelled")), 0.0);
    let failures = format!(
        "kvault_job_failures_total{{cluster=\"local\",error_kind=\"{error}\",operation=\"backup\"}}"
    );
    assert_eq!(value(&text, &failures), 1.0);
    assert_eq!(
        value(
            &text,
            "kvault_job_duration_seconds_count{cluster=\"local\",operation=\"backup\",outcome=\"completed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "kvault_jobs_in_flight{cluster=\"local\",operation=\"backup\"}"
        ),
        0.0
    );

    // Per topic, from the archive store.
    let of_topic = |name: &str| format!("{name}{{cluster=\"local\",topic=\"{topic}\"}}");
    assert_eq!(
        value(&text, &of_topic("kvault_archive_stored_bytes")),
        backup["compressed_size_bytes"].as_f64().unwrap()
    );
    assert_eq!(value(&text, &of_topic("kvault_archive_backups")), 1.0);
    let last = value(
        &text,
        &of_topic("kvault_backup_last_success_timestamp_seconds"),
    );
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - 60.0..=now).contains(&last), "{last} vs {now}");

    // Requests by route pattern and status; unmatched paths share one label.
    assert_eq!(
        value(
            &text,
            "kvault_http_requests_total{method=\"POST\",route=\"/api/kafka/clusters/{cluster_id}/backup\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "kvault_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert!(
        value(
            &text,
            "kvault_http_request_duration_seconds_count{method=\"POST\",route=\"/api/kafka/clusters/{cluster_id}/backup\"}"
        ) >= 1.0
    );

    // Lag: six records left, the oldest produced two minutes ago.
    assert_eq!(value(&text, &lag), 6.0);
    let seconds = value(&text, &lag.replace("_lag_records", "_lag_seconds"));
    assert!((119.0..200.0).contains(&seconds), "{seconds}");
    let refreshed = value(
        &text,
        "kvault_consumer_group_lag_refreshed_timestamp_seconds{cluster=\"local\",group=\"billing\"}",
    );
    assert!(refreshed > now - 60.0, "{refreshed}");
    assert_eq!(
        value(
            &text,
            "kvault_consumer_group_lag_refresh_failures_total{cluster=\"local\",group=\"billing\"}"
        ),
        0.0
    );
}

/// A group whose lag cannot be read shows no stale figures and counts the failures.
#[tokio::test]
async fn a_group_that_cannot_be_read_counts_failures() {
    let app = spawn_app_with(|s| watch(s, "nobody")).await;
    let failures =
        "kvault_consumer_group_lag_refresh_failures_total{cluster=\"local\",group=\"nobody\"} ";
    let mut text = String::new();
    for _ in 0..50 {
        text = scrape(&app).await;
        if text
            .lines()
            .any(|l| l.starts_with(failures) && !l.ends_with(" 0"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(value(&text, failures.trim_end()) >= 1.0, "{text}");
    assert!(
        !text.contains("kvault_consumer_group_lag_records{"),
        "{text}"
    );
}

/// Refusals by the per-subject rate limit are counted.
#[tokio::test]
async fn rate_limit_refusals_are_counted() {
    let app = spawn_app_with(|s| s.limits.requests_per_minute = 2).await;
    let token = app.token_for("metrics-subject", Role::Viewer, None);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = app
            .client
            .get(app.url("/api/kafka/backups"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            "kvault_rate_limit_refusals_total{limit=\"subject\",operation=\"\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "kvault_http_requests_total{method=\"GET\",route=\"/api/kafka/backups\",status=\"429\"}"
        ),
        1.0
    );
}

/// `kvault_...` names in `text` (not part of a longer word).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("kvault_") {
        let start = i + at;
        let word_before =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if !word_before {
            names.insert(text[start..end].trim_end_matches('_').to_owned());
        }
        i = end;
    }
    names
}

/// Every PromQL expression in the dashboard (`expr`, and template `query`/`definition`).
fn dashboard_expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_expressions(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    dashboard_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() > 20, "{expressions:?}");
    let mut used = metric_names(&expressions.join("\n"));
    let alerts = std::fs::read_to_string(docs.join("alerts.yaml")).unwrap();
    assert!(alerts.contains("alert: KvaultBackupStale"));
    assert!(alerts.contains("alert: KvaultJobFailures"));
    assert!(alerts.contains("alert: KvaultConsumerLagHigh"));
    used.extend(metric_names(&alerts));

    // A server that has run a job (one completed, one failed), answered requests and read a
    // group's lag.
    let app = spawn_app_with(|s| watch(s, "billing")).await;
    let topic = app.topic_with(2, 40).await;
    app.fake().commit("local", "billing", &topic, 0, 5);
    app.completed_backup(&topic).await;
    failed_backup(&app, &topic).await;
    let text = scrape_until(&app, "kvault_consumer_group_lag_seconds{").await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");
    assert!(used.len() >= 20, "{used:?}");
}

/// On the real broker, through the Kafka engine the binary wires in: a group committed without
/// joining shows its exact lag in records, and a lag in seconds from the next record's time.
#[tokio::test]
async fn consumer_lag_of_a_real_group_is_exported() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let group = format!("metrics-{}", uuid::Uuid::new_v4().simple());
    let app = crate::helpers::spawn_app_on_broker_with(|s| watch(s, &group)).await;
    let topic = app.topic_with(1, 30).await;
    let mut config = app.broker().client_config();
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(12))
        .unwrap();
    tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
        .await
        .unwrap()
        .unwrap();
    let series = format!(
        "kvault_consumer_group_lag_records{{cluster=\"local\",group=\"{group}\",partition=\"0\",topic=\"{topic}\"}}"
    );
    let text = scrape_until(&app, &series).await;
    assert_eq!(value(&text, &series), 18.0);
    let seconds = value(&text, &series.replace("_lag_records", "_lag_seconds"));
    assert!((0.0..120.0).contains(&seconds), "{seconds}");
}
