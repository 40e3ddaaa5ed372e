//! Job state in the database: replicas sharing it, listing filters, and the SQLite default.

use std::time::Duration;

use kvault_api::auth::Role;
use kvault_api::jobs::{JobStore, Lease, NewJob};
use kvault_domain::{JobId, JobKind, JobProgress, JobState};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{fresh_database, spawn_with_settings, test_settings};

#[tokio::test]
async fn a_second_replica_starting_leaves_the_first_ones_running_job_alone() {
    let db = fresh_database().await;
    let (settings, dir) = test_settings(db.clone());
    let first = spawn_with_settings(settings.clone(), dir).await;
    let topic = first.topic_with(1, 20).await;
    let resp = first
        .post(
            "/api/kafka/clusters/local/backup?wait=false",
            Role::Operator,
            &json!({"topic": topic, "rate_limit_per_second": 1}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second replica (or a restart of another one) on the same database.
    let (mut settings2, dir2) = test_settings(db);
    settings2.auth = settings.auth.clone();
    let second = spawn_with_settings(settings2, dir2).await;
    let job: Value = second
        .get(&format!("/api/kafka/jobs/{id}"), Role::Viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "running", "{job}");

    // Its owner still runs it: a cancel there ends it, once.
    let resp = first
        .post(
            &format!("/api/kafka/jobs/{id}/cancel"),
            Role::Operator,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
    let job = second.wait_for_job(&id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_filtered() {
    let (settings, dir) = test_settings(fresh_database().await);
    let app = spawn_with_settings(settings, dir).await;
    let topic = app.topic_with(1, 2).await;
    for _ in 0..2 {
        app.completed_backup(&topic).await;
    }
    let all: Value = app.get_json("/api/kafka/jobs", Role::Viewer).await;
    let jobs = all["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs[0]["created_at"].as_str() >= jobs[1]["created_at"].as_str());
    let none: Value = app
        .get_json("/api/kafka/jobs?kind=restore", Role::Viewer)
        .await;
    assert!(none["jobs"].as_array().unwrap().is_empty());
    let done: Value = app
        .get(
            "/api/kafka/jobs?kind=backup&state=completed&cluster_id=local&limit=1",
            Role::Viewer,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["jobs"].as_array().unwrap().len(), 1);
    let id = done["jobs"][0]["id"].as_str().unwrap();
    let job: Value = app
        .get_json(&format!("/api/kafka/jobs/{id}"), Role::Viewer)
        .await;
    assert_eq!(job["state"], "completed");
    assert_eq!(job["request"]["topic"], topic.as_str());
    assert!(job["result"]["backup_id"].is_string());
    // One attempt, on the replica that admitted it; the list leaves attempts out.
    let attempts = job["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{job}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert!(attempts[0]["replica"].is_string(), "{job}");
    assert!(attempts[0].get("resumed_from").is_none(), "{job}");
    assert!(done["jobs"][0].get("attempts").is_none());
}

#[tokio::test]
async fn the_sqlite_default_serves_the_same_api() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/data/kvault.db?mode=rwc", tmp.path().display());
    let (settings, dir) = test_settings(url.clone());
    let app = spawn_with_settings(settings, dir).await;
    let topic = app.topic_with(1, 4).await;
    app.completed_backup(&topic).await;
    let metrics: Value = app.get_json("/api/kafka/metrics", Role::Viewer).await;
    assert_eq!(metrics["completed_backups_today"], 1);
    let jobs: Value = app.get_json("/api/kafka/jobs", Role::Viewer).await;
    assert_eq!(jobs["jobs"][0]["state"], "completed");
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn the_job_store_speaks_postgres_directly() {
    let store = JobStore::connect(&fresh_database().await, 2).await.unwrap();
    store.ping().await.unwrap();
    let figures = store.figures(chrono::Utc::now()).await.unwrap();
    assert!(figures.groups.is_empty(), "{figures:?}");
    assert_eq!(
        figures.average_duration_ms(JobKind::Backup, JobState::Completed),
        0.0
    );
}

/// A database whose clock runs an hour behind the machine's, as every replica's clock would be
/// an hour fast: unqualified `clock_timestamp()` resolves to a schema searched before
/// `pg_catalog` (named last in the path), which shifts the real one.
async fn database_an_hour_behind() -> String {
    let url = fresh_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    for statement in [
        "CREATE SCHEMA skewed".to_owned(),
        "CREATE FUNCTION skewed.clock_timestamp() RETURNS timestamptz LANGUAGE sql \
         AS $$ SELECT pg_catalog.clock_timestamp() - interval '1 hour' $$"
            .to_owned(),
        format!("ALTER DATABASE \"{name}\" SET search_path = public, skewed, pg_catalog"),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    url
}

/// Milliseconds from the database's clock to job `id`'s lease expiry.
async fn lease_left_ms(db: &str, id: JobId) -> i64 {
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    sqlx::query_scalar(
        "SELECT lease_expires_at_ms - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
         FROM jobs WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_replica_whose_clock_runs_ahead_cannot_take_over_a_live_job() {
    let db = database_an_hour_behind().await;
    let store = JobStore::connect(&db, 2).await.unwrap();
    let ttl = Duration::from_secs(10);
    let (owner, fast) = (Lease::new("owner", ttl), Lease::new("fast", ttl));
    let job = NewJob {
        id: JobId::new(),
        kind: JobKind::Restore,
        cluster_id: Some("local".into()),
        target_cluster_id: None,
        subject: "s".into(),
        request: json!({}),
        created_at: chrono::Utc::now(),
        backup_id: None,
    };
    assert!(store.admit(&job, &owner, None).await.unwrap());
    // Leases are written by the database's clock: ttl ahead of it, not an hour more.
    let left = lease_left_ms(&db, job.id).await;
    assert!(
        (8_000..=10_500).contains(&left),
        "lease ends {left} ms from now"
    );
    let progress = JobProgress::default();
    assert!(store.renew(&owner, job.id, progress).await.unwrap());
    let left = lease_left_ms(&db, job.id).await;
    assert!(
        (8_000..=10_500).contains(&left),
        "lease ends {left} ms from now"
    );
    // Live by the database's clock, long gone by the replica's: nobody takes it.
    assert!(store.claim_expired(&fast).await.unwrap().is_none());
    let row = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((row.owner.as_deref(), row.attempts), (Some("owner"), 1));
    // Expired by the database's clock: taken over at once.
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    sqlx::query(
        "UPDATE jobs SET lease_expires_at_ms = \
         CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) - 1 WHERE id = $1",
    )
    .bind(job.id.to_string())
    .execute(&mut conn)
    .await
    .unwrap();
    let claimed = store.claim_expired(&fast).await.unwrap().unwrap();
    assert_eq!(
        (claimed.owner.as_deref(), claimed.attempts),
        (Some("fast"), 2)
    );
    assert!(!store.renew(&owner, job.id, progress).await.unwrap());
}

#[tokio::test]
async fn a_verify_job_counts_each_record_once_and_reports_its_total() {
    let app = crate::helpers::spawn_app().await;
    let topic = app.topic_with(3, 105).await;
    let backup = app.completed_backup(&topic).await;
    let id = backup["backup_id"].as_str().unwrap();
    let resp = app
        .post(
            &format!("/api/kafka/backups/{id}/verify?wait=false"),
            Role::Operator,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let job_id = resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["messages_checked"], 105, "{job}");
    let progress = &job["progress"];
    assert_eq!(progress["messages"], 105, "{job}");
    assert_eq!(progress["total_messages"], 105, "{job}");
    assert_eq!(progress["percent"], 100.0, "{job}");
    assert!(progress.get("eta_seconds").is_none(), "ended: {job}");
}
