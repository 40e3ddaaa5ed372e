//! Chaos: several `kvault serve` replicas on one PostgreSQL database (fresh per run), one S3
//! bucket of the test server (`s3://bucket/prefix`, with foreign objects beside and inside the
//! prefix) and the test broker run a mixed workload (backups, the incremental runs of a
//! schedule with a short interval and retention, restores into fresh topics, two restores at
//! once into one topic, deletes) while replicas are killed with SIGKILL and restarted at random
//! points. Afterwards the invariants are checked with independent clients (the testkit's
//! consumer, plain S3 requests), not with kvault's own reports:
//!
//! - the foreign objects are untouched;
//! - every listed backup verifies (its objects as its manifest names them, and `verify`);
//! - nothing unlisted remains under the prefix after the sweep;
//! - every chain restores to exactly the records its links hold;
//! - no restored topic holds a record twice; of two restores at once into one topic one runs.
//!
//! Seeded: the seed is printed at the start and on failure, and `KVAULT_CHAOS_SEED=n` replays
//! its sequence of decisions (timing still varies). `scripts/chaos.sh N` runs N seeds.

mod common;

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/raw_s3.rs"]
mod raw_s3;
#[path = "chaos/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use common::Cluster;
use kvault_testkit::TestBroker;

use raw_s3::RawS3;
use workload::{Workload, FOREIGN_IN_PREFIX, FOREIGN_OUTSIDE};

/// How long the workload runs, at most, and how many steps it takes, at most.
const WORKLOAD_TIME: Duration = Duration::from_secs(60);
const WORKLOAD_STEPS: usize = 150;

/// Prints the seed when the test fails, however it fails.
struct SeedOnFailure(u64);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos test failed with seed {0}; replay: KVAULT_CHAOS_SEED={0} cargo test -p kvault --test chaos",
                self.0
            );
        }
    }
}

fn seed() -> u64 {
    match std::env::var("KVAULT_CHAOS_SEED") {
        Ok(raw) => raw.trim().parse().expect("KVAULT_CHAOS_SEED is a number"),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_killed_at_random_lose_nothing_and_touch_nothing_foreign() {
    let seed = seed();
    println!("chaos seed: {seed}");
    let _report = SeedOnFailure(seed);
    let started = Instant::now();
    let broker = TestBroker::get().await;
    let cluster = Cluster::with_settings(
        broker,
        &[
            ("KVAULT__BACKUP__RETENTION_SWEEP_INTERVAL_SECS", "2".into()),
            ("KVAULT__STORAGE__S3__ABANDONED_AFTER_SECS", "10".into()),
            // The workload's schedule runs every 2 s, below the production floor.
            ("KVAULT__SCHEDULES__MIN_INTERVAL_SECS", "1".into()),
        ],
    )
    .await;
    let s3 = RawS3::new(&cluster);
    s3.put(FOREIGN_OUTSIDE.0, FOREIGN_OUTSIDE.1).await;
    s3.put(FOREIGN_IN_PREFIX.0, FOREIGN_IN_PREFIX.1).await;

    let mut workload = Workload::start(seed, broker, &cluster).await;
    let deadline = Instant::now() + WORKLOAD_TIME;
    for _ in 0..WORKLOAD_STEPS {
        if Instant::now() >= deadline {
            break;
        }
        workload.step().await;
    }
    workload.settle().await;
    println!("workload done after {:?}", started.elapsed());
    println!("{}", workload.summary());

    let mut violations = Vec::new();
    check::foreign_objects(&s3, &mut violations).await;
    let listed = check::listed_backups(&workload, &s3, &mut violations).await;
    check::nothing_unlisted(&s3, &listed, &mut violations).await;
    check::restores_of_the_workload(&workload, &mut violations).await;
    check::chains_restore_exactly(&workload, &listed, &mut violations).await;
    println!("checks done after {:?}", started.elapsed());
    assert!(
        violations.is_empty(),
        "{} invariant violation(s) (seed {seed}):\n- {}\n{}",
        violations.len(),
        violations.join("\n- "),
        workload.summary()
    );
}
