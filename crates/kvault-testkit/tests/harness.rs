//! The harness itself: a real broker answers, and records survive a produce/consume round trip
//! byte for byte (keys, null keys, null values, empty values, ordered duplicate headers,
//! explicit timestamps).

use kvault_testkit::{TestBroker, TestRecord};

#[tokio::test]
async fn produce_and_consume_through_rdkafka() {
    let broker = TestBroker::get().await;
    let topic = broker.unique_topic("harness");
    broker.create_topic(&topic, 3).await;
    assert_eq!(broker.partition_count(&topic).await, Some(3));

    let records = vec![
        TestRecord {
            partition: Some(0),
            key: Some(b"k1".to_vec()),
            value: Some(b"v1".to_vec()),
            headers: vec![
                ("h".into(), Some(b"a".to_vec())),
                ("h".into(), Some(vec![0xff, 0x00])),
                ("empty".into(), Some(vec![])),
                ("null".into(), None),
            ],
            timestamp: Some(1_700_000_000_000),
        },
        TestRecord {
            partition: Some(1),
            key: None,
            value: None,
            headers: vec![],
            timestamp: Some(1_700_000_000_001),
        },
        TestRecord {
            partition: Some(2),
            key: Some(vec![]),
            value: Some(vec![]),
            headers: vec![],
            timestamp: Some(1_700_000_000_002),
        },
        TestRecord {
            partition: Some(0),
            key: Some(vec![0x80, 0x81]),
            value: Some(vec![0xc3, 0x28]),
            headers: vec![],
            timestamp: Some(1_700_000_000_003),
        },
    ];
    let placed = broker.produce(&topic, &records).await;
    assert_eq!(placed, vec![(0, 0), (1, 0), (2, 0), (0, 1)]);
    assert_eq!(broker.watermarks(&topic, 0).await, (0, 2));

    let consumed = broker.consume_all(&topic).await;
    assert_eq!(consumed.len(), records.len());
    let order = [0usize, 3, 1, 2]; // sorted by partition, offset
    for (got, &i) in consumed.iter().zip(order.iter()) {
        let want = &records[i];
        assert_eq!(Some(got.partition), want.partition);
        assert_eq!(got.key, want.key, "record {i}");
        assert_eq!(got.value, want.value, "record {i}");
        assert_eq!(got.headers, want.headers, "record {i}");
        assert_eq!(got.timestamp, want.timestamp, "record {i}");
    }

    broker.delete_topic(&topic).await;
}

#[tokio::test]
async fn unique_topics_differ() {
    let broker = TestBroker::get().await;
    assert_ne!(broker.unique_topic("t"), broker.unique_topic("t"));
    assert!(broker.bootstrap().contains(':'));
}
