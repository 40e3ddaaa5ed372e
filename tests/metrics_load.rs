//! `/metrics` under load on a store of realistic size (issue 14): a real `kvault serve` on
//! PostgreSQL with 1,000 jobs in its table and 200 archives on disk answers 2,000 scrapes from
//! 64 concurrent clients, every one with 200, while its peak RSS stays bounded, and the
//! figures behind them are computed a handful of times, not 2,000.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use kvault_api::jobs::{JobStore, Lease, NewJob};
use kvault_domain::ports::{ArchiveSpec, ArchiveStore};
use kvault_domain::{
    BackupId, Compression, CompressionType, JobId, JobKind, JobProgress, JobState, Record,
    TimestampType, TopicMetadata,
};
use sqlx::{Connection, PgConnection};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const JOBS: usize = 1_000;
const ARCHIVES: usize = 200;
const REQUESTS: usize = 2_000;
const CONCURRENCY: usize = 64;
/// Peak RSS allowed for the server (a debug build; it idles at ~30-40 MB).
const MAX_PEAK_RSS_MB: u64 = 200;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn fresh_database() -> String {
    let name = format!("kvault_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(PG_ADMIN).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// 1,000 ended jobs of every kind and outcome, as the server would have stored them.
async fn seed_jobs(database: &str) {
    let store = JobStore::connect(database, 4).await.unwrap();
    let lease = Lease::new("seed", Duration::from_secs(60));
    let kinds = [JobKind::Backup, JobKind::Restore, JobKind::Verify];
    let states = [JobState::Completed, JobState::Failed, JobState::Cancelled];
    for i in 0..JOBS {
        let id = JobId::new();
        let job = NewJob {
            id,
            kind: kinds[i % kinds.len()],
            cluster_id: Some("local".into()),
            target_cluster_id: None,
            subject: "seed".into(),
            request: serde_json::json!({"topic": format!("topic-{}", i % 50)}),
            created_at: Utc::now(),
            backup_id: None,
        };
        assert!(store.admit(&job, &lease, None).await.unwrap());
        let progress = JobProgress {
            messages: i as u64,
            bytes: 10 * i as u64,
            ..Default::default()
        };
        let result = serde_json::json!({"status": "completed", "messages": i});
        let ended = store
            .finish(
                "seed",
                id,
                states[(i / 3) % states.len()],
                Some(&result),
                None,
                progress,
                Utc::now(),
                5,
            )
            .await
            .unwrap();
        assert!(ended);
    }
}

/// 200 small archives (2 partitions, 20 records each) written through the archive port.
async fn seed_archives(dir: &std::path::Path) {
    let store: Arc<dyn ArchiveStore> = Arc::new(kvault_storage::Store::local(dir).unwrap());
    for i in 0..ARCHIVES {
        let spec = ArchiveSpec {
            backup_id: BackupId::parse(&format!("backup-load-{i}")).unwrap(),
            archive_uid: kvault_domain::ids::new_uid(),
            cluster_id: kvault_domain::ClusterId::parse("local").expect("cluster id"),
            topic: TopicMetadata {
                name: format!("topic-{}", i % 50),
                partition_count: 2,
                replication_factor: 1,
                configs: Default::default(),
            },
            compression: Compression::new(CompressionType::Lz4, None).unwrap(),
            include_keys: true,
            include_headers: true,
            created_at: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
            consumer_groups: Vec::new(),
            backup_set: None,
            chain: None,
        };
        let writer = store.create(spec).await.unwrap();
        tokio::task::spawn_blocking(move || {
            let mut partitions = Vec::new();
            for p in 0..2 {
                let mut w = writer.partition(p).unwrap();
                for offset in 0..20 {
                    w.append(&Record {
                        offset,
                        timestamp: 1_700_000_000_000 + offset,
                        timestamp_type: TimestampType::CreateTime,
                        key: Some(format!("k{offset}").into_bytes()),
                        value: Some(vec![b'v'; 200]),
                        headers: Vec::new(),
                    })
                    .unwrap();
                }
                partitions.push(w.finish(0, 20).unwrap());
            }
            writer.commit(partitions, Utc::now()).unwrap();
        })
        .await
        .unwrap();
    }
}

fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_2000_scrapes_at_64_concurrent_on_a_full_store() {
    let database = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let archives = dir.path().join("backups");
    seed_jobs(&database).await;
    seed_archives(&archives).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_kvault"))
            .current_dir(dir.path())
            .env("KVAULT__DATABASE__URL", &database)
            .env("KVAULT__BACKUP__BASE_PATH", &archives)
            .env("KVAULT__SERVER__PORT", port.to_string())
            // One client address sends everything here: lift its anonymous quota.
            .env("KVAULT__LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE", "1000000")
            .env("RUST_LOG", "warn")
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "kvault serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_mb = peak_rss_mb(server.0.id());

    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..REQUESTS)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                match http.get(&url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, REQUESTS, "answers other than 200: {:?}", {
        let mut other: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        other.dedup();
        other
    });

    let text = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(&format!("kvault_backups_stored {ARCHIVES}")),
        "{text}"
    );
    // As seed_jobs assigns kinds and states.
    let completed_backups = (0..JOBS).filter(|i| i % 3 == 0 && (i / 3) % 3 == 0).count();
    let completed =
        format!("kvault_jobs{{kind=\"backup\",state=\"completed\"}} {completed_backups}");
    assert!(text.contains(&completed), "{completed} in {text}");
    let refreshes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("kvault_metrics_refreshes_total "))
        .unwrap()
        .parse()
        .unwrap();
    // One refresh per 2 s snapshot at most (plus the start-up scrapes), not one per request.
    assert!(
        refreshes <= 3 + elapsed.as_secs() / 2,
        "{refreshes} refreshes in {elapsed:?}"
    );
    let peak_mb = peak_rss_mb(server.0.id());
    eprintln!(
        "metrics load: {REQUESTS} requests at {CONCURRENCY} concurrent in {:.2} s ({:.0}/s), \
         {refreshes} refreshes, peak RSS {before_mb} MB before, {peak_mb} MB after",
        elapsed.as_secs_f64(),
        REQUESTS as f64 / elapsed.as_secs_f64()
    );
    assert!(peak_mb <= MAX_PEAK_RSS_MB, "peak RSS {peak_mb} MB");
}
