//! Consumer-group helpers for tests: commit and read a group's offsets without joining it,
//! and keep a real member in a group for as long as a test needs it to be active.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::TestBroker;

impl TestBroker {
    /// A client with `group`'s id that never subscribes: it only commits and fetches offsets.
    pub fn group_client(&self, group: &str) -> BaseConsumer {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        config.create().expect("group client")
    }

    /// Commits `offsets` (`(partition, offset)`) for `group` on `topic`, without joining.
    pub async fn commit_group(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        let consumer = self.group_client(group);
        let mut list = TopicPartitionList::new();
        for (p, o) in offsets {
            list.add_partition_offset(topic, *p, Offset::Offset(*o))
                .expect("offset");
        }
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .expect("commit thread")
            .expect("commit");
    }

    /// `group`'s committed offset on each of partitions `0..partitions` of `topic` (`None`:
    /// no commit).
    pub async fn group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Vec<Option<i64>> {
        let consumer = self.group_client(group);
        let mut query = TopicPartitionList::new();
        for p in 0..partitions {
            query
                .add_partition_offset(topic, p, Offset::Invalid)
                .expect("query");
        }
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let answer = consumer
                .committed_offsets(query, Duration::from_secs(10))
                .expect("committed offsets");
            (0..partitions)
                .map(
                    |p| match answer.find_partition(&topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) if o >= 0 => Some(o),
                        _ => None,
                    },
                )
                .collect()
        })
        .await
        .expect("offset thread")
    }

    /// A consumer that joins `group` subscribed to `topic` and stays a member (polling on a
    /// thread of its own) until the returned value is dropped. Returns once it has an
    /// assignment.
    pub fn active_member(&self, group: &str, topic: &str) -> ActiveMember {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", "10000");
        let consumer: BaseConsumer = config.create().expect("member");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let (assigned_tx, assigned_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut told = false;
                while !stop.load(Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                    if !told && consumer.assignment().is_ok_and(|a| a.count() > 0) {
                        told = true;
                        let _ = assigned_tx.send(());
                    }
                }
                consumer.unsubscribe();
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        assigned_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the member got an assignment within 30 s");
        ActiveMember {
            stop,
            thread: Some(thread),
        }
    }
}

/// A live group member; leaves the group when dropped.
pub struct ActiveMember {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ActiveMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
