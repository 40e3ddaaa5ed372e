//! The produce path shared by restore and migrate: turning a domain [`Record`] into an rdkafka
//! [`FutureRecord`], and sending it with back-pressure while a bounded number of deliveries
//! are awaited. How a confirmed delivery is accounted for (tally, offset check, offset map) is
//! the caller's; the order deliveries are awaited in is the caller's choice of queue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot::Canceled;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{Stream, StreamExt};
use kvault_domain::error::DomainResult;
use kvault_domain::record::{Record, TimestampType};
use kvault_domain::DomainError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

/// How long to wait before retrying a send into a full local queue when no delivery of ours
/// is pending (the queue is full of another task's records).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);
/// Deliveries awaited at once per partition task; librdkafka's own queue is bounded too.
pub(crate) const MAX_IN_FLIGHT: usize = 20_000;

/// The record to produce to `topic`/`partition`: key, value (null stays null, empty stays
/// empty), headers in order with null values kept, then `extra_headers`, and the timestamp
/// when the source had one (else the producer stamps it).
pub(crate) fn future_record<'a>(
    topic: &'a str,
    partition: i32,
    record: &'a Record,
    extra_headers: &[(&str, &[u8])],
) -> FutureRecord<'a, [u8], [u8]> {
    // `OwnedHeaders::insert` copies the bytes, so extra headers may borrow from temporaries.
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + extra_headers.len());
    for h in &record.headers {
        headers = headers.insert(KHeader {
            key: h.key.as_str(),
            value: h.value.as_deref(),
        });
    }
    for (key, value) in extra_headers {
        headers = headers.insert(KHeader {
            key,
            value: Some(*value),
        });
    }
    let mut out: FutureRecord<'a, [u8], [u8]> = FutureRecord::to(topic)
        .partition(partition)
        .headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    if record.timestamp_type != TimestampType::NotAvailable {
        out = out.timestamp(record.timestamp);
    }
    out
}

/// A delivery report, or `Canceled` when the producer went away before reporting.
pub(crate) type DeliveryResult = Result<OwnedDeliveryResult, Canceled>;

/// What a settled delivery yields: the source offset of the record, and its report.
pub(crate) type Delivered = (i64, DeliveryResult);

/// One sent record waiting for its delivery report, tagged with its source offset.
pub(crate) struct PendingDelivery {
    source_offset: i64,
    future: DeliveryFuture,
}

impl Future for PendingDelivery {
    type Output = Delivered;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let offset = self.source_offset;
        Pin::new(&mut self.future)
            .poll(cx)
            .map(|result| (offset, result))
    }
}

/// A queue of pending deliveries: [`FuturesUnordered`] settles them as they come,
/// [`FuturesOrdered`] in send order.
pub(crate) trait DeliveryQueue: Stream<Item = Delivered> + Unpin {
    fn push_delivery(&mut self, delivery: PendingDelivery);
    fn pending(&self) -> usize;
}

impl DeliveryQueue for FuturesUnordered<PendingDelivery> {
    fn push_delivery(&mut self, delivery: PendingDelivery) {
        self.push(delivery);
    }

    fn pending(&self) -> usize {
        self.len()
    }
}

impl DeliveryQueue for FuturesOrdered<PendingDelivery> {
    fn push_delivery(&mut self, delivery: PendingDelivery) {
        self.push_back(delivery);
    }

    fn pending(&self) -> usize {
        self.len()
    }
}

/// Records in flight through one producer for one task: at most `max_in_flight` deliveries
/// are awaited at once, and each confirmed or failed delivery goes through `settle`.
pub(crate) struct Deliveries<Q, S> {
    queue: Q,
    settle: S,
    max_in_flight: usize,
}

impl<Q, S> Deliveries<Q, S>
where
    Q: DeliveryQueue,
    S: FnMut(Delivered) -> DomainResult<()>,
{
    pub(crate) fn new(queue: Q, max_in_flight: usize, settle: S) -> Self {
        Self {
            queue,
            settle,
            max_in_flight,
        }
    }

    /// Sends `out` (the record read at `source_offset`). While librdkafka's local queue is
    /// full it settles one pending delivery first (or pauses when none is ours); then it
    /// settles deliveries until at most `max_in_flight` remain. A failed send or a failed
    /// settlement is returned at once.
    pub(crate) async fn send(
        &mut self,
        producer: &FutureProducer,
        mut out: FutureRecord<'_, [u8], [u8]>,
        source_offset: i64,
    ) -> DomainResult<()> {
        loop {
            match producer.send_result(out) {
                Ok(future) => {
                    self.queue.push_delivery(PendingDelivery {
                        source_offset,
                        future,
                    });
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    match self.queue.next().await {
                        Some(done) => (self.settle)(done)?,
                        None => tokio::time::sleep(QUEUE_FULL_PAUSE).await,
                    }
                }
                Err((e, back)) => {
                    return Err(crate::error::kafka_error(
                        format_args!("produce to {}/{}", back.topic, back.partition.unwrap_or(-1)),
                        e,
                    ))
                }
            }
        }
        while self.queue.pending() > self.max_in_flight {
            if let Some(done) = self.queue.next().await {
                (self.settle)(done)?;
            }
        }
        Ok(())
    }

    /// Waits for every pending delivery, settling all of them; the first failure is returned
    /// after the rest are settled, so the caller's accounting covers everything delivered.
    pub(crate) async fn settle_all(&mut self) -> DomainResult<()> {
        let mut first_error = None;
        while let Some(done) = self.queue.next().await {
            if let Err(e) = (self.settle)(done) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The common verdict on a delivery report: the delivery, or the error saying why `topic`
/// did not get it (after librdkafka's own retries).
pub(crate) fn delivered(result: DeliveryResult, topic: &str) -> DomainResult<(i32, i64)> {
    match result {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _))) => Err(crate::error::kafka_error(
            format_args!("delivery to {topic} failed"),
            e,
        )),
        Err(_) => Err(DomainError::kafka(
            "producer shut down before delivery was confirmed",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::record::Header;
    use rdkafka::message::Headers;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>, ts: TimestampType) -> Record {
        Record {
            offset: 7,
            timestamp: 1_700_000_000_000,
            timestamp_type: ts,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: vec![
                Header {
                    key: "a".into(),
                    value: Some(b"1".to_vec()),
                },
                Header {
                    key: "a".into(),
                    value: None,
                },
                Header {
                    key: "e".into(),
                    value: Some(Vec::new()),
                },
            ],
        }
    }

    #[test]
    fn future_record_keeps_bytes_headers_and_timestamp() {
        let r = record(None, Some(b""), TimestampType::CreateTime);
        let out = future_record("t", 3, &r, &[("x-offset", b"7")]);
        assert_eq!(out.topic, "t");
        assert_eq!(out.partition, Some(3));
        assert_eq!(out.key, None, "null key stays null");
        assert_eq!(
            out.payload,
            Some(&b""[..]),
            "empty value stays empty, not null"
        );
        assert_eq!(out.timestamp, Some(1_700_000_000_000));
        let headers = out.headers.as_ref().expect("headers");
        let seen: Vec<(String, Option<Vec<u8>>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a".to_owned(), Some(b"1".to_vec())),
                ("a".to_owned(), None),
                ("e".to_owned(), Some(Vec::new())),
                ("x-offset".to_owned(), Some(b"7".to_vec())),
            ]
        );
    }

    #[test]
    fn future_record_leaves_missing_timestamp_and_tombstone_alone() {
        let r = record(Some(b"k"), None, TimestampType::NotAvailable);
        let out = future_record("t", 0, &r, &[]);
        assert_eq!(out.key, Some(&b"k"[..]));
        assert_eq!(out.payload, None, "a tombstone stays a tombstone");
        assert_eq!(out.timestamp, None);
        assert_eq!(out.headers.as_ref().map(|h| h.count()), Some(3));
    }
}
