//! Flushing a producer so that it sends at once the batches librdkafka holds back for
//! `linger.ms`: the one call kvault makes to librdkafka outside the `rdkafka` crate's safe API.
//!
//! `rdkafka`'s `Producer::flush` calls `rd_kafka_flush` with a zero timeout in a loop, polling
//! for up to 100 ms in between. librdkafka treats `linger.ms` as over only *during* a flush
//! call, and a zero-timeout call mostly ends before the broker thread it wakes looks: a
//! held-back batch leaves only when one of those calls happens to win that race (measured:
//! 6 s for a batch held back by a 120 s linger; this call: milliseconds). Calling
//! `rd_kafka_flush` once with the real timeout keeps the flush on while it waits.
#![allow(unsafe_code)]

use std::time::Duration;

use rdkafka::bindings::{rd_kafka_flush, rd_kafka_resp_err_t};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};

/// Sends every queued record now and waits up to `timeout` for all of their delivery reports
/// to be handled (delivered or failed).
pub(crate) fn flush_now<C>(producer: &ThreadedProducer<C>, timeout: Duration) -> KafkaResult<()>
where
    C: ProducerContext + 'static,
{
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let client = producer.client();
    // SAFETY: `native_ptr` is the live `rd_kafka_t` of `producer`, which the borrow keeps
    // alive for the whole call. librdkafka's calls on an `rd_kafka_t` are thread-safe. The
    // `rdkafka` crate receives delivery reports as events (`RD_KAFKA_DR_MODE_EVENT`), and in
    // that mode `rd_kafka_flush` serves no queue: it only waits for the producer's message
    // count to reach zero while the producer's own polling thread handles the reports, so no
    // callback of the `rdkafka` crate runs on this thread.
    let code = unsafe { rd_kafka_flush(client.native_ptr(), timeout_ms) };
    match code {
        rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        other => Err(KafkaError::Flush(RDKafkaErrorCode::from(other))),
    }
}
