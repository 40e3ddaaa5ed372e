//! Test records: what tests produce ([`TestRecord`], [`bench_message`]) and read back
//! ([`ConsumedRecord`]), and producing them with extra client settings.

use futures::StreamExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// A record to produce. `partition: None` lets the producer's partitioner choose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in milliseconds; `None` lets the producer stamp it.
    pub timestamp: Option<i64>,
}

impl TestRecord {
    /// A record with a key and a value, no headers.
    pub fn kv(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

/// The benches' message shape: a ~500-byte JSON-like value, a short key, two headers and a
/// CreateTime, spread round-robin over `partitions`. Deterministic in `i`.
pub fn bench_message(i: usize, partitions: i32) -> TestRecord {
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789";
    let mut value = format!(
        r#"{{"id":{i},"user":"user-{}","event":"page_view","ts":{},"url":"https://example.com/p/{}","ua":"Mozilla/5.0 (X11; Linux x86_64)","data":""#,
        i % 100_003,
        1_750_000_000_000u64 + i as u64,
        i % 977
    );
    while value.len() < 480 {
        value.push_str(&filler[..(480 - value.len()).min(filler.len())]);
    }
    value.push_str("\"}");
    TestRecord {
        partition: Some((i % partitions.max(1) as usize) as i32),
        key: Some(format!("user-{}", i % 100_003).into_bytes()),
        value: Some(value.into_bytes()),
        headers: vec![
            ("trace-id".into(), Some(format!("{i:016x}").into_bytes())),
            ("source".into(), Some(b"bench".to_vec())),
        ],
        timestamp: Some(1_750_000_000_000 + i as i64),
    }
}

/// A record read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

/// Produces `records` in order through `producer`, keeping many in flight; returns
/// `(partition, offset)` of each, in the same order.
pub async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> Vec<(i32, i64)> {
    futures::stream::iter(records.iter().enumerate())
        .map(|(i, r)| {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in &r.headers {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_ref(),
                });
            }
            let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(topic).headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if let Some(value) = &r.value {
                record = record.payload(value);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            async move {
                match producer.send(record, Timeout::Never).await {
                    Ok(delivery) => (delivery.partition, delivery.offset),
                    Err((e, _)) => panic!("produce record #{i} to {topic}: {e}"),
                }
            }
        })
        .buffered(10_000)
        .collect()
        .await
}

impl ConsumedRecord {
    /// The message as read back, bytes and headers unchanged.
    pub(crate) fn from_message(m: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        use rdkafka::message::{Headers, Message};
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: m.timestamp().to_millis(),
        }
    }
}
