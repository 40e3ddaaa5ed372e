//! Latency of `GET /api/kafka/metrics` under a short local load: a server on a random port
//! backed by a fresh PostgreSQL database (`KVAULT_BENCH_DATABASE_URL`, default: a new database
//! on 127.0.0.1:5432) seeded with job rows and small archives, hit by concurrent clients.
//!
//! `cargo run --release -p kvault-api --example metrics_latency -- [requests] [concurrency] [jobs] [backups]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_api::auth::{mint_token, Role};
use kvault_api::configuration::{Secret, Settings};
use kvault_api::jobs::NewJob;
use kvault_api::Application;
use kvault_domain::manifest::TopicMetadata;
use kvault_domain::ports::ArchiveSpec;
use kvault_domain::{
    BackupId, Compression, CompressionType, JobId, JobKind, JobProgress, JobState, Record,
    TimestampType,
};
use sqlx::Connection;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(8);
    let jobs = args.get(2).copied().unwrap_or(1000);
    let backups = args.get(3).copied().unwrap_or(50);

    let url = match std::env::var("KVAULT_BENCH_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            let name = format!("kvault_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn =
                sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await?;
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
    };
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::embedded_defaults()?;
    settings.server.port = 0;
    settings.clusters.clear();
    settings.database.url = Secret::new(url);
    settings.backup.base_path = dir.path().join("backups");
    settings.auth.jwt_secret = Some(Secret::new("bench-secret-bench-secret-bench-secret"));
    settings.limits.requests_per_minute = u32::MAX / 2;

    // No clusters: an in-memory engine serves the (empty) cluster list, real archives on disk.
    let archives: Arc<dyn kvault_domain::ports::ArchiveStore> =
        Arc::new(kvault_storage::Store::local(&settings.backup.base_path)?);
    let engine = kvault_testkit::fake::FakeEngine::new(&[], archives.clone());
    let adapters = kvault_api::Adapters {
        engine: Arc::new(engine.clone()),
        archives,
        filters: Arc::new(kvault_kafka::transform::CelFilters),
        lag: Arc::new(engine),
    };
    let app = Application::build(settings.clone(), adapters).await?;
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());

    // Seed: finished backup jobs and small real archives.
    let store = state.runner.jobs();
    let now = Utc::now();
    for i in 0..jobs {
        let id = JobId::new();
        let lease = state.runner.lease();
        store
            .admit(
                &NewJob {
                    id,
                    kind: JobKind::Backup,
                    cluster_id: Some("local".into()),
                    target_cluster_id: None,
                    subject: "bench".into(),
                    request: serde_json::json!({"topic": "events"}),
                    created_at: now,
                    backup_id: None,
                },
                lease,
                None,
            )
            .await?;
        let state_ = if i % 20 == 0 {
            JobState::Failed
        } else {
            JobState::Completed
        };
        store
            .finish(
                &lease.owner,
                id,
                state_,
                None,
                None,
                JobProgress::default(),
                now,
                1000 + i as u64,
            )
            .await?;
    }
    let archive = state.archives.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        for b in 0..backups {
            let spec = ArchiveSpec {
                backup_id: BackupId::parse(&format!("bench-{b}")).map_err(|e| e.to_string())?,
                archive_uid: kvault_domain::ids::new_uid(),
                cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
                topic: TopicMetadata {
                    name: "events".into(),
                    partition_count: 1,
                    replication_factor: 1,
                    configs: Default::default(),
                },
                compression: Compression::new(CompressionType::Gzip, None)
                    .map_err(|e| e.to_string())?,
                include_keys: true,
                include_headers: true,
                created_at: Utc::now(),
                consumer_groups: Vec::new(),
                backup_set: None,
                chain: None,
            };
            let writer = runtime
                .block_on(archive.create(spec))
                .map_err(|e| e.to_string())?;
            let mut p = writer.partition(0).map_err(|e| e.to_string())?;
            for offset in 0..100i64 {
                let record = Record {
                    offset,
                    timestamp: 1_700_000_000_000 + offset,
                    timestamp_type: TimestampType::CreateTime,
                    key: Some(format!("k{offset}").into_bytes()),
                    value: Some(format!("value {offset} ").repeat(10).into_bytes()),
                    headers: vec![],
                };
                p.append(&record).map_err(|e| e.to_string())?;
            }
            let part = p.finish(0, 100).map_err(|e| e.to_string())?;
            writer
                .commit(vec![part], Utc::now())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await??;

    let token = mint_token(
        &settings.auth,
        "bench",
        Role::Viewer,
        Duration::from_secs(3600),
        None,
    )?;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/kafka/metrics");
    let first: serde_json::Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    println!("metrics: {first}");

    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(requests)));
    let started = Instant::now();
    let per_worker = requests / concurrency;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, token, latencies) = (
            client.clone(),
            url.clone(),
            token.clone(),
            latencies.clone(),
        );
        workers.push(tokio::spawn(async move {
            for _ in 0..per_worker {
                let t = Instant::now();
                let resp = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("request");
                assert!(resp.status().is_success());
                let _ = resp.bytes().await;
                latencies.lock().unwrap().push(t.elapsed());
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let total = started.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "GET /api/kafka/metrics: {} requests, concurrency {concurrency}, {jobs} job rows, {backups} archives: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} req/s",
        l.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l[l.len() - 1].as_secs_f64() * 1e3,
        l.len() as f64 / total.as_secs_f64()
    );
    Ok(())
}
