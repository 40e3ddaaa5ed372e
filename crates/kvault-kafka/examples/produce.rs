//! Fills a topic with the roundtrip bench's messages from a process of its own, so that the
//! memory of a later `kvault backup`/`restore` is measured in a process that never produced
//! anything (scripts/bench-memory.sh drives it).
//!
//! Usage: `produce <bootstrap> <topic> <messages> [partitions]`. Creates the topic (replication
//! factor 1, default 3 partitions) and produces `messages` keyed ~500-byte JSON-like messages
//! with two headers, round-robin over the partitions.

use std::time::Instant;

use kvault_testkit::{bench_message, produce_with, TestBroker, TestRecord, BOOTSTRAP_ENV};

const CHUNK: usize = 10_000;

fn usage() -> ! {
    eprintln!("usage: produce <bootstrap> <topic> <messages> [partitions]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(bootstrap), Some(topic), Some(n)) = (args.first(), args.get(1), args.get(2)) else {
        usage()
    };
    let Ok(n) = n.parse::<usize>() else { usage() };
    let partitions: i32 = match args.get(3) {
        None => 3,
        Some(p) => p.parse().unwrap_or_else(|_| usage()),
    };
    // TestBroker::get connects to this address instead of starting a broker of its own.
    std::env::set_var(BOOTSTRAP_ENV, bootstrap);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let broker = TestBroker::get().await;
        broker.create_topic(topic, partitions).await;
        let producer = broker.producer(&[("compression.type", "lz4"), ("linger.ms", "20")]);
        let started = Instant::now();
        for chunk_start in (0..n).step_by(CHUNK) {
            let chunk: Vec<TestRecord> = (chunk_start..(chunk_start + CHUNK).min(n))
                .map(|i| bench_message(i, partitions))
                .collect();
            produce_with(&producer, topic, &chunk).await;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "produced {n} messages into {topic} in {secs:.1} s ({:.0} msg/s)",
            n as f64 / secs
        );
    });
}
