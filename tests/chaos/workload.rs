//! The chaos workload: records keep arriving on two topics; a schedule backs one up every two
//! seconds (incremental runs, 12 s retention); at random the other is backed up (full, or
//! incremental from one of its backups), a listed backup is restored into a fresh topic (or
//! into one topic twice at once, through two replicas), a listed backup is deleted, a replica
//! is killed with SIGKILL or a dead one restarted. Every decision comes from a seeded RNG.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kvault_testkit::{TestBroker, TestRecord};
use serde_json::{json, Value};

use crate::common::{Cluster, Replica};

/// A foreign object outside kvault's prefix, and one inside its root that is not kvault's.
pub const FOREIGN_OUTSIDE: (&str, &[u8]) = ("other-app/report.csv", b"id,total\n1,42\n");
pub const FOREIGN_IN_PREFIX: (&str, &[u8]) = ("shared/notes.txt", b"notes, not an archive\n");

const REPLICAS: usize = 3;
const PARTITIONS: i32 = 3;
const SCHEDULE: &str = "chaos";

/// splitmix64: small, seedable, good enough to pick actions.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A restore the workload started (answered 202).
#[derive(Debug, Clone)]
pub struct RestoreRun {
    pub job_id: String,
    pub backup_id: String,
    pub source_topic: String,
    pub target: String,
}

/// What the workload did, for the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub steps: usize,
    pub produced: usize,
    pub kills: usize,
    pub restarts: usize,
    pub backups: usize,
    pub restores: usize,
    pub double_restores: usize,
    pub deletes: usize,
    /// Answers other than the expected ones, by status (0: no answer).
    pub other_answers: std::collections::BTreeMap<u16, usize>,
}

pub struct Workload<'a> {
    rng: Rng,
    pub broker: &'static TestBroker,
    pub cluster: &'a Cluster,
    replicas: Vec<Option<Replica>>,
    pub scheduled_topic: String,
    pub manual_topic: String,
    next_value: u64,
    pub restores: Vec<RestoreRun>,
    /// Statuses of the two restores sent at once into one topic, per pair.
    pub pairs: Vec<(String, Vec<u16>)>,
    pub stats: Stats,
    events: Vec<String>,
    started: Instant,
    /// Jobs still running when the workload gave up waiting for them.
    pub unsettled: Vec<String>,
}

impl<'a> Workload<'a> {
    pub async fn start(seed: u64, broker: &'static TestBroker, cluster: &'a Cluster) -> Self {
        let scheduled_topic = broker.unique_topic("chaos-scheduled");
        let manual_topic = broker.unique_topic("chaos-manual");
        for topic in [&scheduled_topic, &manual_topic] {
            broker.create_topic(topic, PARTITIONS).await;
        }
        let mut replicas = Vec::new();
        for i in 0..REPLICAS {
            replicas.push(Some(cluster.start(&format!("r{}", i + 1)).await));
        }
        let mut workload = Workload {
            rng: Rng(seed),
            broker,
            cluster,
            replicas,
            scheduled_topic,
            manual_topic,
            next_value: 0,
            restores: Vec::new(),
            pairs: Vec::new(),
            stats: Stats::default(),
            events: Vec::new(),
            started: Instant::now(),
            unsettled: Vec::new(),
        };
        workload.produce(200).await;
        let schedule = json!({
            "schedule_id": SCHEDULE, "cluster_id": "local", "topic": workload.scheduled_topic,
            "every": "2s", "retention": "12s", "compression": "zstd"
        });
        let resp = cluster
            .post(workload.live(0), "/api/kafka/schedules", schedule)
            .await;
        assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
        workload
    }

    /// One step: records arrive, then one random action, then a random pause.
    pub async fn step(&mut self) {
        self.stats.steps += 1;
        let batch = 10 + self.rng.below(40);
        self.produce(batch).await;
        match self.rng.below(12) {
            0..=2 => self.backup().await,
            3..=4 => self.restore().await,
            5 => self.double_restore().await,
            6 => self.delete().await,
            7..=8 => self.kill().await,
            _ => self.restart().await,
        }
        let pause = 200 + self.rng.below(700) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }

    fn note(&mut self, event: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.events.push(format!("{at:6.1}s {event}"));
    }

    fn count_other(&mut self, status: u16) {
        *self.stats.other_answers.entry(status).or_default() += 1;
    }

    /// Unique values (`{topic}:{n}`) on both topics, spread over the partitions.
    async fn produce(&mut self, n: usize) {
        for topic in [self.scheduled_topic.clone(), self.manual_topic.clone()] {
            let records: Vec<TestRecord> = (0..n)
                .map(|_| {
                    self.next_value += 1;
                    TestRecord {
                        partition: Some(self.rng.below(PARTITIONS as usize) as i32),
                        key: Some(format!("k{}", self.next_value % 17).into_bytes()),
                        value: Some(format!("{topic}:{}", self.next_value).into_bytes()),
                        headers: Vec::new(),
                        timestamp: None,
                    }
                })
                .collect();
            self.broker.produce(&topic, &records).await;
            self.stats.produced += n;
        }
    }

    fn live_indices(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|i| self.replicas[*i].is_some())
            .collect()
    }

    /// The `pick`-th live replica (modulo how many live).
    pub fn live(&self, pick: usize) -> &Replica {
        let live = self.live_indices();
        self.replicas[live[pick % live.len()]].as_ref().unwrap()
    }

    fn any_live(&mut self) -> &Replica {
        let pick = self.rng.below(REPLICAS);
        self.live(pick)
    }

    /// Listed backups as `(backup_id, topic)`.
    async fn backups(&mut self) -> Vec<(String, String)> {
        let (cluster, replica) = (self.cluster, self.any_live());
        let Ok(list) = cluster.try_get(replica, "/api/kafka/backups").await else {
            return Vec::new();
        };
        list["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let id = b["backup_id"].as_str().unwrap_or_default().to_owned();
                (id, b["topic"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    async fn backup(&mut self) {
        let parents: Vec<String> = self
            .backups()
            .await
            .into_iter()
            .filter(|(_, topic)| *topic == self.manual_topic)
            .map(|(id, _)| id)
            .collect();
        let mut body = json!({"topic": self.manual_topic, "compression": "lz4"});
        if !parents.is_empty() && self.rng.below(2) == 0 {
            body["incremental_from"] = json!(parents[self.rng.below(parents.len())]);
        }
        let (cluster, replica) = (self.cluster, self.any_live());
        let name = replica.name.clone();
        let path = "/api/kafka/clusters/local/backup?wait=false";
        match cluster.try_post(replica, path, body.clone()).await {
            Ok(resp) if resp.status().as_u16() == 202 => {
                self.stats.backups += 1;
                self.note(format!("backup on {name}: {body}"));
            }
            Ok(resp) => self.count_other(resp.status().as_u16()),
            Err(_) => self.count_other(0),
        }
    }

    /// A random listed backup, restored into a fresh topic through `replicas` (one request
    /// each, all at once); the statuses, and the restore that was accepted, if any.
    async fn restore_into_fresh(&mut self, replicas: usize) -> Option<(String, Vec<u16>)> {
        let backups = self.backups().await;
        if backups.is_empty() {
            return None;
        }
        let (backup_id, topic) = backups[self.rng.below(backups.len())].clone();
        let target = self.broker.unique_topic("chaos-restored");
        let body = json!({"backup_id": backup_id, "target_topic": target});
        let picks: Vec<usize> = (0..replicas)
            .map(|i| self.rng.below(REPLICAS) + i)
            .collect();
        let path = "/api/kafka/clusters/local/restore?wait=false";
        let sends = picks
            .iter()
            .map(|p| self.cluster.try_post(self.live(*p), path, body.clone()));
        let mut statuses = Vec::new();
        for answer in futures::future::join_all(sends).await {
            let Ok(resp) = answer else {
                statuses.push(0);
                continue;
            };
            let status = resp.status().as_u16();
            statuses.push(status);
            if status == 202 {
                let job: Value = resp.json().await.unwrap_or_default();
                self.restores.push(RestoreRun {
                    job_id: job["job_id"].as_str().unwrap_or_default().to_owned(),
                    backup_id: backup_id.clone(),
                    source_topic: topic.clone(),
                    target: target.clone(),
                });
            }
        }
        self.note(format!("restore {backup_id} -> {target}: {statuses:?}"));
        Some((target, statuses))
    }

    async fn restore(&mut self) {
        if let Some((_, statuses)) = self.restore_into_fresh(1).await {
            match statuses[0] {
                202 => self.stats.restores += 1,
                other => self.count_other(other),
            }
        }
    }

    async fn double_restore(&mut self) {
        if let Some(pair) = self.restore_into_fresh(2).await {
            self.stats.double_restores += 1;
            self.pairs.push(pair);
        }
    }

    async fn delete(&mut self) {
        let backups = self.backups().await;
        if backups.is_empty() {
            return;
        }
        let (id, _) = backups[self.rng.below(backups.len())].clone();
        let (cluster, replica) = (self.cluster, self.any_live());
        let path = format!("/api/kafka/backups/{id}");
        let status = match cluster.try_delete(replica, &path).await {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        };
        self.note(format!("delete {id}: {status}"));
        match status {
            200 | 204 => self.stats.deletes += 1,
            // In use, or continued by a later link: refused, as documented.
            409 | 404 => {}
            other => self.count_other(other),
        }
    }

    async fn kill(&mut self) {
        let live = self.live_indices();
        if live.len() < 2 {
            return;
        }
        let i = live[self.rng.below(live.len())];
        if let Some(mut replica) = self.replicas[i].take() {
            replica.kill();
            self.stats.kills += 1;
            self.note(format!("SIGKILL {}", replica.name));
        }
    }

    async fn restart(&mut self) {
        let dead: Vec<usize> = (0..REPLICAS)
            .filter(|i| self.replicas[*i].is_none())
            .collect();
        if dead.is_empty() {
            return;
        }
        let i = dead[self.rng.below(dead.len())];
        let name = format!("r{}", i + 1);
        self.replicas[i] = Some(self.cluster.start(&name).await);
        self.stats.restarts += 1;
        self.note(format!("restart {name}"));
    }

    /// Stops the schedule, restarts every dead replica, waits for every job to end, then for
    /// the sweep to have run past `abandoned_after_secs`.
    pub async fn settle(&mut self) {
        for i in 0..REPLICAS {
            if self.replicas[i].is_none() {
                let name = format!("r{}", i + 1);
                self.replicas[i] = Some(self.cluster.start(&name).await);
                self.stats.restarts += 1;
            }
        }
        let path = format!("/api/kafka/schedules/{SCHEDULE}");
        let resp = self.cluster.try_delete(self.live(0), &path).await;
        assert!(resp.is_ok_and(|r| r.status().is_success()));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut db = self.cluster.db().await;
        loop {
            let running: Vec<String> =
                sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running'")
                    .fetch_all(&mut db)
                    .await
                    .unwrap();
            if running.is_empty() || Instant::now() >= deadline {
                self.unsettled = running;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // abandoned_after_secs (10) and two sweeps (every 2 s) after the last writer stopped.
        tokio::time::sleep(Duration::from_secs(15)).await;
    }

    pub fn summary(&self) -> String {
        let mut out = format!("{:?}\nevents:\n", self.stats);
        for event in &self.events {
            let _ = writeln!(out, "  {event}");
        }
        out
    }
}
