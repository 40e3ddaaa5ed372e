//! The connection check every operation starts with: a short-lived client asks for metadata
//! while its context watches librdkafka's error events, so a refused password or a failed TLS
//! handshake ends the operation at once with a cause the user can act on, instead of a
//! `BrokerTransportFailure` once the metadata timeout has passed (librdkafka reports those
//! causes only through its error callback and log, and keeps retrying).
//!
//! What a TLS verification failure was (unknown CA, another host's certificate, expired) is
//! not in librdkafka's message; [`tls::diagnose`] finds out with a handshake of its own.

mod tls;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvault_domain::error::DomainResult;
use kvault_domain::{DomainError, KafkaFailure};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::client::{base_config, kafka_error, ClusterConfig};

/// Why the cluster refused the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// SASL: wrong user or password, a mechanism the broker does not enable.
    Authentication(String),
    /// The TLS handshake failed; `verify` when the broker's certificate was not accepted.
    Tls { reason: String, verify: bool },
}

/// Sorts an error event of librdkafka into a refusal, or `None` when it is not one (a broker
/// that is down is reported by the metadata request's own timeout).
pub(crate) fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Refusal> {
    use RDKafkaErrorCode as C;
    let verify = reason.contains("certificate verify failed");
    match code {
        Some(C::SSL) => Some(Refusal::Tls {
            reason: reason.to_owned(),
            verify,
        }),
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState,
        ) => Some(Refusal::Authentication(reason.to_owned())),
        // A plaintext client hung up on by a TLS listener: librdkafka's hint names it.
        _ if reason.contains("SSL handshake failed")
            || reason.contains("connecting to a SSL listener?")
            || verify =>
        {
            Some(Refusal::Tls {
                reason: reason.to_owned(),
                verify,
            })
        }
        // A broker that hangs up in the middle of SASL has refused it (librdkafka reports the
        // disconnect as a transport error naming the state it was in).
        _ if reason.contains("SASL authentication error") || reason.contains("in state AUTH_") => {
            Some(Refusal::Authentication(reason.to_owned()))
        }
        _ => None,
    }
}

/// The first refusal the probe client reported.
#[derive(Default)]
struct Seen {
    refusal: Mutex<Option<Refusal>>,
}

impl Seen {
    fn first(&self) -> Option<Refusal> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }
}

/// The probe client's context: records refusals, forwards librdkafka's log to `tracing`.
struct Watch {
    seen: Arc<Seen>,
    /// The client does not speak TLS (`security.protocol` plaintext or SASL_PLAINTEXT).
    plaintext: bool,
    /// Connections closed by the broker right after connecting, before any answer.
    hung_up: AtomicU32,
}

impl ClientContext for Watch {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "{fac} {message}")
            }
            _ => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
        // A failed TLS handshake reaches the client as a `FAIL` log line only (no error
        // event), so connection failures are read from the log too.
        if fac == "FAIL" {
            self.record(classify(None, message));
            self.plaintext_to_tls(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "connection check");
        self.record(classify(error.rdkafka_error_code(), reason));
    }
}

impl Watch {
    fn record(&self, refusal: Option<Refusal>) {
        let Some(refusal) = refusal else {
            return;
        };
        if let Ok(mut first) = self.seen.refusal.lock() {
            first.get_or_insert(refusal);
        }
    }

    /// A TLS listener hangs up on a plaintext client's first request (ApiVersion) without a
    /// word. A plaintext broker that is merely restarting can do that once, so only a second
    /// hang-up in that state counts.
    fn plaintext_to_tls(&self, message: &str) {
        let hung_up =
            message.contains("Disconnected") && message.contains("state APIVERSION_QUERY");
        if self.plaintext && hung_up && self.hung_up.fetch_add(1, Ordering::Relaxed) >= 1 {
            self.record(Some(Refusal::Tls {
                reason: format!(
                    "{}: the broker closes plaintext connections at once, as a TLS listener does",
                    short(message)
                ),
                verify: false,
            }));
        }
    }
}

impl ProducerContext for Watch {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How long one metadata attempt of the check waits before the client's events are served:
/// librdkafka hands error events to the context only when the client is polled.
const SLICE: Duration = Duration::from_millis(200);

/// Succeeds when the cluster answers a metadata request within `timeout`. Fails as soon as
/// librdkafka reports that the cluster refused kvault's credentials
/// ([`KafkaFailure::Authentication`]) or the TLS handshake failed ([`KafkaFailure::Tls`], with
/// what was wrong with the certificate), else like a metadata request that got no answer.
pub async fn verify(cluster: &ClusterConfig, timeout: Duration) -> DomainResult<()> {
    let seen = Arc::new(Seen::default());
    // A producer because polling it serves the error events (a consumer's poll would ask for
    // messages); it never produces.
    let mut config = base_config(cluster)?;
    // librdkafka logs a broker hanging up at debug level; the check must see those lines
    // whatever the process's log filter (they reach `tracing` at debug level, filtered there).
    config.set_log_level(RDKafkaLogLevel::Debug);
    let client: BaseProducer<Watch> = config
        .create_with_context(Watch {
            seen: seen.clone(),
            plaintext: !speaks_tls(cluster),
            hung_up: AtomicU32::new(0),
        })
        .map_err(creation_error)?;
    let (answer, client) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = SLICE.min(deadline.saturating_duration_since(Instant::now()));
            let answer = client.client().fetch_metadata(None, slice);
            client.poll(Duration::ZERO);
            let outcome = match (answer, seen.first()) {
                (Ok(_), _) => Ok(()),
                (Err(_), Some(refusal)) => Err(Err(refusal)),
                (Err(e), None) if Instant::now() >= deadline => Err(Ok(e)),
                (Err(_), None) => continue,
            };
            return (outcome, client);
        }
    })
    .await
    .map_err(|e| DomainError::internal(format!("connection check task failed: {e}")))?;
    // The operation that follows need not wait for the client's teardown.
    crate::admin::drop_in_background(client);
    match answer {
        Ok(()) => Ok(()),
        Err(Ok(e)) => Err(kafka_error("cluster unreachable (metadata request)", e)),
        Err(Err(refusal)) => Err(refused(cluster, refusal).await),
    }
}

/// librdkafka refuses to create a client whose own TLS material it cannot load (a key whose
/// passphrase is wrong, a missing certificate file): a TLS failure, not an outage.
fn creation_error(error: KafkaError) -> DomainError {
    let text = error.to_string();
    if !text.contains("ssl.") {
        return kafka_error("create connection check client", error);
    }
    DomainError::Kafka {
        failure: KafkaFailure::Tls,
        message: format!(
            "TLS: the client's own certificate or key cannot be used: {text} (check \
             ssl.certificate.location, ssl.key.location and ssl.key.password)"
        ),
        source: Some(Box::new(error)),
    }
}

/// Whether the client is configured for TLS (`SSL` or `SASL_SSL`).
fn speaks_tls(cluster: &ClusterConfig) -> bool {
    cluster
        .properties
        .get("security.protocol")
        .is_some_and(|p| p.to_ascii_uppercase().ends_with("SSL"))
}

/// The domain error for a refusal; a rejected certificate is diagnosed first.
async fn refused(cluster: &ClusterConfig, refusal: Refusal) -> DomainError {
    let (failure, message) = match refusal {
        Refusal::Authentication(reason) => (
            KafkaFailure::Authentication,
            format!(
                "authentication failed: {} (check sasl.username, sasl.password and \
                 sasl.mechanism)",
                short(&reason)
            ),
        ),
        Refusal::Tls {
            reason,
            verify: true,
        } => {
            let config = cluster.clone();
            let diagnosis = tokio::task::spawn_blocking(move || tls::diagnose(&config))
                .await
                .ok()
                .flatten();
            let cause = diagnosis.unwrap_or_else(|| short(&reason).to_owned());
            (
                KafkaFailure::Tls,
                format!("TLS: certificate verify failed: {cause}"),
            )
        }
        Refusal::Tls { reason, .. } => (
            KafkaFailure::Tls,
            format!(
                "TLS: {} (does the listener speak TLS? check security.protocol and the ssl.* \
                 settings)",
                short(&reason)
            ),
        ),
    };
    DomainError::Kafka {
        failure,
        message,
        source: None,
    }
}

/// librdkafka's reason without the advice it appends for OpenSSL installations, which points
/// away from the cause kvault names instead.
fn short(reason: &str) -> &str {
    // A log line starts with the thread that wrote it, `[thrd:...]: `.
    let reason = match reason.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(reason, |(_, text)| text),
        None => reason,
    };
    reason
        .split(": broker certificate could not be verified")
        .next()
        .unwrap_or(reason)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_from_outages() {
        let auth = classify(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication \
             failed during authentication due to invalid credentials with SASL mechanism \
             SCRAM-SHA-512",
        );
        assert!(matches!(auth, Some(Refusal::Authentication(_))), "{auth:?}");
        let tls = classify(
            Some(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
             routines::certificate verify failed: broker certificate could not be verified",
        );
        assert!(
            matches!(tls, Some(Refusal::Tls { verify: true, .. })),
            "{tls:?}"
        );
        let down = classify(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused",
        );
        assert_eq!(down, None);
        let plaintext_to_tls = classify(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "127.0.0.1:9093/bootstrap: Disconnected while requesting ApiVersion: might be \
             caused by incorrect security.protocol configuration (connecting to a SSL \
             listener?) or broker version is < 0.10 (see api.version.request)",
        );
        assert!(
            matches!(plaintext_to_tls, Some(Refusal::Tls { verify: false, .. })),
            "{plaintext_to_tls:?}"
        );
        assert_eq!(
            classify(Some(RDKafkaErrorCode::AllBrokersDown), "1/1 down"),
            None
        );
    }

    #[test]
    fn librdkafkas_openssl_advice_is_cut() {
        assert_eq!(
            short("SSL handshake failed: certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured"),
            "SSL handshake failed: certificate verify failed"
        );
        assert_eq!(
            short("[thrd:sasl_ssl://b:9093/bootstrap]: sasl_ssl://b:9093/bootstrap: SASL authentication error: x"),
            "sasl_ssl://b:9093/bootstrap: SASL authentication error: x"
        );
    }
}
