//! How fast replicas take over jobs: 1,000 running no-op jobs whose leases have expired,
//! claimed by three job stores at once (three connection pools, as three replicas would have)
//! on a fresh PostgreSQL database. Prints jobs claimed per second and checks that every job was
//! claimed exactly once.
//!
//! `cargo run --release -p kvault-api --example claim_throughput [jobs] [replicas]`
//! (PostgreSQL on 127.0.0.1:5432, user postgres, as for the tests).

use std::time::{Duration, Instant};

use chrono::Utc;
use kvault_api::jobs::{JobStore, Lease, NewJob};
use kvault_domain::{JobId, JobKind};
use sqlx::Connection;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let replicas: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let name = format!("kvault_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin =
        sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");

    // A replica that admitted the jobs with a lease that has already run out.
    let seeder = JobStore::connect(&url, 4).await?;
    let dead = Lease::new("dead", Duration::ZERO);
    for _ in 0..jobs {
        let job = NewJob {
            id: JobId::new(),
            kind: JobKind::Drain,
            cluster_id: Some("local".into()),
            target_cluster_id: None,
            subject: "bench".into(),
            request: serde_json::json!({}),
            created_at: Utc::now(),
            backup_id: None,
        };
        seeder.admit(&job, &dead, None).await?;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..replicas {
        let store = JobStore::connect(&url, 4).await?;
        let lease = Lease::new(format!("replica-{r}"), Duration::from_secs(600));
        tasks.push(tokio::spawn(async move {
            let mut claimed = 0usize;
            while let Some(_job) = store.claim_expired(&lease).await? {
                claimed += 1;
            }
            Ok::<usize, kvault_api::jobs::StoreError>(claimed)
        }));
    }
    let mut per_replica = Vec::new();
    for t in tasks {
        per_replica.push(t.await??);
    }
    let elapsed = started.elapsed();
    let total: usize = per_replica.iter().sum();
    let mut check = sqlx::PgConnection::connect(&url).await?;
    let (twice,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE attempts <> 2")
        .fetch_one(&mut check)
        .await?;
    println!(
        "{total} of {jobs} jobs claimed by {replicas} replicas in {:.2} s: {:.0} jobs/s \
         (per replica {per_replica:?}); jobs not claimed exactly once: {twice}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    drop(check);
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    if total != jobs || twice != 0 {
        return Err("some job was claimed twice or not at all".into());
    }
    Ok(())
}
