//! [`FakeEngine`]: an in-memory implementation of the domain's operation traits, for API tests
//! of auth, roles, limits, jobs and errors that must not wait for a broker. Topics and
//! consumer-group offsets live in memory; backups and restores go through a real
//! [`ArchiveStore`], so listing, verify, delete and metrics see real archives. It also answers
//! the consumer-lag port from its in-memory groups.
//!
//! What it does not model (test those on the broker): CEL transformations, consumer-group
//! translation, offset preservation, time bounds, partition remapping by key hash.

mod backup;
mod drain;
mod dry_run;
mod lag;
mod migrate;
mod restore;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kvault_domain::error::{DomainResult, KafkaFailure};
use kvault_domain::job::OperationControl;
use kvault_domain::operations::Clusters;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::record::{Header, Record, TimestampType};
use kvault_domain::{ClusterId, DomainError};

/// A record to produce: key and value, each possibly null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// One in-memory topic: its partitions' records, offsets from 0.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeTopic {
    pub(crate) partitions: Vec<Vec<Record>>,
}

impl FakeTopic {
    fn with_partitions(count: i32) -> Self {
        Self {
            partitions: vec![Vec::new(); count.max(1) as usize],
        }
    }

    pub(crate) fn message_count(&self) -> usize {
        self.partitions.iter().map(Vec::len).sum()
    }

    /// Appends `record` to `partition` at the next offset; returns that offset.
    pub(crate) fn append(&mut self, partition: usize, mut record: Record) -> i64 {
        let log = &mut self.partitions[partition];
        let offset = log.len() as i64;
        record.offset = offset;
        log.push(record);
        offset
    }
}

#[derive(Debug, Default)]
pub(crate) struct FakeCluster {
    pub(crate) topics: BTreeMap<String, FakeTopic>,
    /// group → (topic, partition) → committed offset.
    pub(crate) groups: BTreeMap<String, BTreeMap<(String, i32), i64>>,
}

/// The in-memory engine. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeEngine {
    inner: Arc<Inner>,
}

struct Inner {
    clusters: Mutex<BTreeMap<ClusterId, FakeCluster>>,
    archives: Arc<dyn ArchiveStore>,
    unavailable: AtomicBool,
}

impl FakeEngine {
    /// An engine that knows `clusters` (all empty) and writes backups to `archives`.
    pub fn new(clusters: &[&str], archives: Arc<dyn ArchiveStore>) -> Self {
        let clusters = clusters
            .iter()
            .map(|id| {
                let id = ClusterId::parse(id).expect("fake cluster ids are valid");
                (id, FakeCluster::default())
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                clusters: Mutex::new(clusters),
                archives,
                unavailable: AtomicBool::new(false),
            }),
        }
    }

    /// Creates (or empties) `topic` with `partitions` partitions.
    pub fn create_topic(&self, cluster: &str, topic: &str, partitions: i32) {
        self.with_cluster(cluster, |c| {
            c.topics
                .insert(topic.to_owned(), FakeTopic::with_partitions(partitions));
        });
    }

    /// Appends `(key, value)` records round-robin over the topic's partitions, with one
    /// header each; creates the topic with one partition when it is missing.
    pub fn produce(&self, cluster: &str, topic: &str, records: &[KeyValue<'_>]) {
        self.produce_at(
            cluster,
            topic,
            chrono::Utc::now().timestamp_millis(),
            records,
        );
    }

    /// [`Self::produce`] with every record's CreateTime set to `timestamp_ms`.
    pub fn produce_at(
        &self,
        cluster: &str,
        topic: &str,
        timestamp_ms: i64,
        records: &[KeyValue<'_>],
    ) {
        self.with_cluster(cluster, |c| {
            let t = c
                .topics
                .entry(topic.to_owned())
                .or_insert_with(|| FakeTopic::with_partitions(1));
            let count = t.partitions.len();
            for (i, (key, value)) in records.iter().enumerate() {
                let record = Record {
                    offset: 0,
                    timestamp: timestamp_ms,
                    timestamp_type: TimestampType::CreateTime,
                    key: key.map(<[u8]>::to_vec),
                    value: value.map(<[u8]>::to_vec),
                    headers: vec![Header {
                        key: "h".into(),
                        value: Some(vec![i as u8]),
                    }],
                };
                t.append(i % count, record);
            }
        });
    }

    /// Every record of `topic`, partition by partition.
    pub fn records(&self, cluster: &str, topic: &str) -> Vec<Record> {
        self.with_cluster(cluster, |c| {
            c.topics
                .get(topic)
                .map(|t| t.partitions.concat())
                .unwrap_or_default()
        })
    }

    /// Commits `offset` for `group` on one partition (creating the group).
    pub fn commit(&self, cluster: &str, group: &str, topic: &str, partition: i32, offset: i64) {
        self.with_cluster(cluster, |c| {
            c.groups
                .entry(group.to_owned())
                .or_default()
                .insert((topic.to_owned(), partition), offset);
        });
    }

    /// While set, every call answers like a broker that cannot be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.unavailable.store(unavailable, Ordering::Relaxed);
    }

    pub(crate) fn archives(&self) -> &Arc<dyn ArchiveStore> {
        &self.inner.archives
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ClusterId, FakeCluster>> {
        self.inner
            .clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn with_cluster<T>(&self, cluster: &str, f: impl FnOnce(&mut FakeCluster) -> T) -> T {
        let id = ClusterId::parse(cluster).expect("valid cluster id");
        let mut clusters = self.lock();
        f(clusters
            .get_mut(&id)
            .expect("the fake engine knows this cluster"))
    }

    /// Runs `f` on a known, reachable cluster: `NotFound` / `Kafka { Unavailable }` otherwise.
    pub(crate) fn on<T>(
        &self,
        cluster: &ClusterId,
        f: impl FnOnce(&mut FakeCluster) -> DomainResult<T>,
    ) -> DomainResult<T> {
        if self.inner.unavailable.load(Ordering::Relaxed) {
            return Err(DomainError::Kafka {
                failure: KafkaFailure::Unavailable,
                message: format!("cluster '{cluster}': all brokers are down (fake)"),
                source: None,
            });
        }
        let mut clusters = self.lock();
        let c = clusters.get_mut(cluster).ok_or_else(|| {
            DomainError::not_found(kvault_domain::error::Missing::Cluster, cluster.as_str())
        })?;
        f(c)
    }
}

#[async_trait]
impl Clusters for FakeEngine {
    fn knows(&self, id: &ClusterId) -> bool {
        self.lock().contains_key(id)
    }

    fn ids(&self) -> Vec<ClusterId> {
        self.lock().keys().cloned().collect()
    }

    async fn ping(&self, cluster: &ClusterId) -> DomainResult<()> {
        self.on(cluster, |_| Ok(()))
    }

    async fn topic_exists(&self, cluster: &ClusterId, topic: &str) -> DomainResult<bool> {
        self.on(cluster, |c| Ok(c.topics.contains_key(topic)))
    }

    async fn list_topics(&self, cluster: &ClusterId) -> DomainResult<Vec<String>> {
        self.on(cluster, |c| {
            let mut topics: Vec<String> = c.topics.keys().cloned().collect();
            topics.sort();
            Ok(topics)
        })
    }
}

/// Sleeps `1/rate` seconds per record (none when `rate` is 0); `Cancelled` once cancelled.
pub(crate) async fn pace(rate: u32, control: &OperationControl) -> DomainResult<()> {
    if control.is_cancelled() {
        return Err(DomainError::Cancelled);
    }
    if rate > 0 {
        tokio::time::sleep(Duration::from_secs_f64(1.0 / f64::from(rate))).await;
        if control.is_cancelled() {
            return Err(DomainError::Cancelled);
        }
    }
    Ok(())
}

pub(crate) fn blocking_failed(e: tokio::task::JoinError) -> DomainError {
    DomainError::internal(format!("fake engine blocking task failed: {e}"))
}
