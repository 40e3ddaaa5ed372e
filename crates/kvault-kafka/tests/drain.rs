//! Drain against a real broker and real consumer groups: a group working through a backlog
//! drains (and sees no rebalance caused by the watcher), a stopped group times out with exact
//! lag and a lag-in-seconds estimate, time_based finishes while a producer keeps writing, and
//! unknown groups/topics are 404s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kvault_domain::drain::{DrainRequest, DrainStatus, DrainStrategy};
use kvault_domain::job::OperationControl;
use kvault_domain::{ClusterId, DomainError};
use kvault_kafka::{ClusterConfig, KafkaCluster};
use kvault_testkit::{TestBroker, TestRecord};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientContext;

fn cluster(broker: &TestBroker) -> KafkaCluster {
    KafkaCluster::connect(
        ClusterId::parse("local").expect("id"),
        &ClusterConfig::new(broker.bootstrap()),
    )
    .expect("cluster")
}

fn request(
    group: &str,
    topics: &[&str],
    strategy: DrainStrategy,
    timeout_seconds: u64,
) -> DrainRequest {
    DrainRequest {
        group_id: group.into(),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        max_lag: 0,
        timeout_seconds,
        check_interval_ms: 100,
        strategy,
    }
}

/// Counts the group rebalances a member goes through.
#[derive(Default)]
struct Counting {
    assignments: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn post_rebalance(
        &self,
        _base: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.assignments.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A real group member: subscribes, consumes, commits every record synchronously after
/// `delay` of "work", until `stop` is set or `limit` records were handled.
fn spawn_member(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    delay: Duration,
    limit: Option<usize>,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<usize>, Arc<AtomicUsize>) {
    let assignments = Arc::new(AtomicUsize::new(0));
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000");
    let consumer: StreamConsumer<Counting> = config
        .create_with_context(Counting {
            assignments: Arc::clone(&assignments),
        })
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let handle = tokio::spawn(async move {
        let mut handled = 0usize;
        while !stop.load(Ordering::SeqCst) && limit.is_none_or(|l| handled < l) {
            match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
                Err(_) => continue,
                Ok(Err(e)) => panic!("consume: {e}"),
                Ok(Ok(m)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    consumer
                        .commit_message(&m, CommitMode::Sync)
                        .expect("commit");
                    handled += 1;
                }
            }
        }
        handled
    });
    (handle, assignments)
}

async fn backlog(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    timestamp: Option<i64>,
) {
    let records: Vec<TestRecord> = (0..partitions)
        .flat_map(|p| {
            (0..per_partition).map(move |i| TestRecord {
                partition: Some(p),
                timestamp,
                ..TestRecord::kv(format!("k{i}"), format!("v{i}"))
            })
        })
        .collect();
    broker.produce(topic, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_based_drain_succeeds_while_a_group_works_through_backlog() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("drain-ok");
    let group = broker.unique_topic("group-ok");
    broker.create_topic(&topic, 2).await;
    backlog(broker, &topic, 2, 150, None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (member, assignments) = spawn_member(
        broker,
        &group,
        &topic,
        Duration::from_millis(2),
        None,
        Arc::clone(&stop),
    );
    // Let the member join so the group exists before the watcher looks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while assignments.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "member never got an assignment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rebalances_before = assignments.load(Ordering::SeqCst);

    let result = cluster(broker)
        .drain(
            request(&group, &[&topic], DrainStrategy::LagBased, 60),
            OperationControl::new(),
        )
        .await
        .expect("drain");
    stop.store(true, Ordering::SeqCst);
    let handled = member.await.expect("member");

    assert_eq!(result.status, DrainStatus::Drained);
    assert_eq!(result.group_id, group);
    assert_eq!(result.total_lag, 0);
    assert_eq!(result.partitions_checked, 2);
    assert_eq!(result.partition_details.len(), 2);
    for (p, lag) in result.partition_details.iter().enumerate() {
        assert_eq!(lag.topic, topic);
        assert_eq!(lag.partition, p as i32);
        assert_eq!(
            (lag.current_offset, lag.latest_offset, lag.lag),
            (150, 150, 0)
        );
        assert_eq!(lag.lag_seconds, None);
    }
    assert_eq!(handled, 300);
    assert_eq!(
        assignments.load(Ordering::SeqCst),
        rebalances_before,
        "the watcher must not cause a rebalance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_times_out_while_the_consumer_is_stopped() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("drain-stuck");
    let group = broker.unique_topic("group-stuck");
    broker.create_topic(&topic, 2).await;
    let minute_ago = chrono::Utc::now().timestamp_millis() - 60_000;
    backlog(broker, &topic, 2, 20, Some(minute_ago)).await;
    // The member handles 10 records, commits them, then stops for good.
    let (member, _) = spawn_member(
        broker,
        &group,
        &topic,
        Duration::ZERO,
        Some(10),
        Arc::new(AtomicBool::new(false)),
    );
    assert_eq!(member.await.expect("member"), 10);

    let result = cluster(broker)
        .drain(
            request(&group, &[&topic], DrainStrategy::LagBased, 1),
            OperationControl::new(),
        )
        .await
        .expect("drain");
    assert_eq!(result.status, DrainStatus::Timeout);
    assert!(result.duration_ms >= 1000, "{}", result.duration_ms);
    assert_eq!(result.total_lag, 30, "{:#?}", result.partition_details);
    let committed: i64 = result
        .partition_details
        .iter()
        .map(|l| l.current_offset)
        .sum();
    assert_eq!(committed, 10);
    for lag in &result.partition_details {
        assert_eq!(lag.latest_offset, 20);
        assert_eq!(lag.lag, 20 - lag.current_offset);
        let age = lag.lag_seconds.expect("lagging partition has an age");
        assert!((59.0..600.0).contains(&age), "age {age}");
    }

    // max_lag above the lag: drained at once, with the same figures.
    let mut req = request(&group, &[&topic], DrainStrategy::LagBased, 5);
    req.max_lag = 30;
    let result = cluster(broker)
        .drain(req, OperationControl::new())
        .await
        .expect("drain");
    assert_eq!(result.status, DrainStatus::Drained);
    assert_eq!(result.total_lag, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_based_drain_finishes_while_a_producer_keeps_writing() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("drain-time");
    let group = broker.unique_topic("group-time");
    broker.create_topic(&topic, 1).await;
    backlog(broker, &topic, 1, 100, None).await;
    let stop = Arc::new(AtomicBool::new(false));

    // A producer that never stops writing while the drain runs.
    let producing = {
        let producer = broker.producer(&[]);
        let topic = topic.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let value = format!("late-{n}");
                let record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&topic).payload(value.as_bytes());
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produce");
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    // The member works more slowly than the producer writes: lag never reaches 0.
    let (member, _) = spawn_member(
        broker,
        &group,
        &topic,
        Duration::from_millis(10),
        None,
        Arc::clone(&stop),
    );
    let c = cluster(broker);
    // Wait for the group to exist (first commit), then note the log end before the drain.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let probe = c
            .drain(
                request(&group, &[&topic], DrainStrategy::LagBased, 1),
                OperationControl::new(),
            )
            .await;
        match probe {
            Ok(_) => break,
            Err(DomainError::NotFound { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("probe: {e}"),
        }
    }
    let (_, high_before) = broker.watermarks(&topic, 0).await;

    let result = c
        .drain(
            request(&group, &[&topic], DrainStrategy::TimeBased, 60),
            OperationControl::new(),
        )
        .await
        .expect("drain");
    let (_, high_after) = broker.watermarks(&topic, 0).await;
    stop.store(true, Ordering::SeqCst);
    let written_late = producing.await.expect("producer");
    member.await.expect("member");

    assert_eq!(result.status, DrainStatus::Drained);
    let lag = &result.partition_details[0];
    assert!(
        lag.current_offset >= high_before,
        "committed {} < log end at start {high_before}",
        lag.current_offset
    );
    assert!(written_late > 0);
    assert!(high_after > high_before, "the producer kept writing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_and_unknown_topic_are_not_found() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("drain-404");
    broker.create_topic(&topic, 1).await;
    let c = cluster(broker);
    let err = c
        .drain(
            request(
                &broker.unique_topic("no-such-group"),
                &[&topic],
                DrainStrategy::LagBased,
                1,
            ),
            OperationControl::new(),
        )
        .await
        .expect_err("unknown group");
    assert!(
        matches!(
            err,
            DomainError::NotFound {
                kind: kvault_domain::error::Missing::ConsumerGroup,
                ..
            }
        ),
        "{err:?}"
    );
    let err = c
        .drain(
            request(
                "any",
                &[&broker.unique_topic("no-such-topic")],
                DrainStrategy::LagBased,
                1,
            ),
            OperationControl::new(),
        )
        .await
        .expect_err("unknown topic");
    assert!(
        matches!(
            err,
            DomainError::NotFound {
                kind: kvault_domain::error::Missing::Topic,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_drain() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("drain-cancel");
    let group = broker.unique_topic("group-cancel");
    broker.create_topic(&topic, 1).await;
    backlog(broker, &topic, 1, 5, None).await;
    let (member, _) = spawn_member(
        broker,
        &group,
        &topic,
        Duration::ZERO,
        Some(1),
        Arc::new(AtomicBool::new(false)),
    );
    member.await.expect("member");
    let control = OperationControl::new();
    let c = cluster(broker);
    let watcher = {
        let control = control.clone();
        let group = group.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            c.drain(
                request(&group, &[&topic], DrainStrategy::LagBased, 120),
                control,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    control.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("drain returns soon after cancel")
        .expect("task");
    assert!(matches!(result, Err(DomainError::Cancelled)), "{result:?}");
}
