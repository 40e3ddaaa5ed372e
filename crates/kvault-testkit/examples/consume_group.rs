//! Reads a whole topic as consumer group `<group>` and commits the group's offsets at the end,
//! so the group exists and has no lag: what a drain needs to answer `drained`.
//! `scripts/postman-check.sh` runs it before the Postman collection's drain request.
//!
//! Usage: `consume_group <bootstrap> <group> <topic>`. Reads every partition from its low
//! watermark up to the high watermark seen at the start (by assignment, so there is no
//! rebalance to wait for), then commits synchronously. Prints what it read; exits 1 when the
//! broker cannot be reached or the topic does not exist, or after 60 s without reaching the end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, group, topic] = args.as_slice() else {
        eprintln!("usage: consume_group <bootstrap> <group> <topic>");
        std::process::exit(2)
    };
    if let Err(e) = consume_to_end(bootstrap, group, topic) {
        eprintln!("consume_group: {e}");
        std::process::exit(1)
    }
}

fn consume_to_end(bootstrap: &str, group: &str, topic: &str) -> Result<(), Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), CALL_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(format!("topic '{topic}' does not exist on {bootstrap}").into());
    }

    // The end to reach per partition; partitions already at their end are done from the start.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut ends = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, CALL_TIMEOUT)?;
        assignment.add_partition_offset(topic, p, Offset::Offset(low))?;
        ends.add_partition_offset(topic, p, Offset::Offset(high))?;
        if high > low {
            remaining.insert(p, high);
        }
    }
    consumer.assign(&assignment)?;

    let started = Instant::now();
    let mut read = 0u64;
    while !remaining.is_empty() {
        if started.elapsed() > TIMEOUT {
            return Err(format!(
                "partitions {:?} not read to the end within {TIMEOUT:?}",
                remaining.keys().collect::<Vec<_>>()
            )
            .into());
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result?;
        read += 1;
        let partition = message.partition();
        if remaining
            .get(&partition)
            .is_some_and(|&end| message.offset() + 1 >= end)
        {
            remaining.remove(&partition);
        }
    }
    // Commit the ends seen at the start: everything up to them has been read.
    consumer.commit(&ends, CommitMode::Sync)?;
    println!(
        "group {group} read {read} messages of {topic} ({} partitions) and committed its offsets",
        partitions.len()
    );
    Ok(())
}
