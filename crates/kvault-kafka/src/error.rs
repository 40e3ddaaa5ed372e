//! This crate's error, [`ClusterError`], and how it becomes the domain's: the error code
//! decides what a caller can act on ([`KafkaFailure`]: unreachable, bad credentials, not
//! allowed, other), librdkafka's error stays the `source`, and the message says what kvault
//! was doing.

use kvault_domain::error::KafkaFailure;
use kvault_domain::DomainError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What a caller can do about an error with this code.
pub fn failure_of(code: RDKafkaErrorCode) -> KafkaFailure {
    use RDKafkaErrorCode as C;
    match code {
        C::AllBrokersDown
        | C::BrokerTransportFailure
        | C::Resolve
        | C::TimedOutQueue
        | C::WaitingForCoordinator
        | C::CoordinatorLoadInProgress
        | C::OperationTimedOut
        | C::MessageTimedOut
        | C::RequestTimedOut
        | C::BrokerNotAvailable
        | C::LeaderNotAvailable
        | C::NetworkException
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::KafkaStorageError => KafkaFailure::Unavailable,
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::SSL => KafkaFailure::Authentication,
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed => KafkaFailure::Authorization,
        _ => KafkaFailure::Other,
    }
}

/// A failure talking to a Kafka cluster, as this crate sees it: what kvault was doing, and
/// librdkafka's error or the code a broker answered. It becomes the domain's
/// [`DomainError::Kafka`] (with itself as the source) at the crate's edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The client failed.
    #[error("{context}: {source}")]
    Client {
        context: String,
        #[source]
        source: KafkaError,
    },
    /// A broker answered an error code for one resource (a topic, a config).
    #[error("{context}: {code}")]
    Broker {
        context: String,
        code: RDKafkaErrorCode,
    },
    /// A message the client already worded, with its code when there is one.
    #[error("{message}")]
    Message {
        message: String,
        code: Option<RDKafkaErrorCode>,
    },
}

impl ClusterError {
    /// What a caller can do about it.
    pub fn failure(&self) -> KafkaFailure {
        let code = match self {
            Self::Client { source, .. } => source.rdkafka_error_code(),
            Self::Broker { code, .. } => Some(*code),
            Self::Message { code, .. } => *code,
        };
        code.map_or(KafkaFailure::Other, failure_of)
    }
}

impl From<ClusterError> for DomainError {
    fn from(error: ClusterError) -> Self {
        DomainError::Kafka {
            failure: error.failure(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

/// Turns a client error into the domain's Kafka error, saying what kvault was doing.
pub fn kafka_error(context: impl std::fmt::Display, error: KafkaError) -> DomainError {
    ClusterError::Client {
        context: context.to_string(),
        source: error,
    }
    .into()
}

/// An error code the broker answered for one resource (a topic, a config), as a domain error.
pub fn code_error(context: impl std::fmt::Display, code: RDKafkaErrorCode) -> DomainError {
    ClusterError::Broker {
        context: context.to_string(),
        code,
    }
    .into()
}

/// A message already written, classified by the code when there is one.
pub fn message_error(code: Option<RDKafkaErrorCode>, message: String) -> DomainError {
    ClusterError::Message { message, code }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_what_a_caller_can_act_on() {
        let cases = [
            (RDKafkaErrorCode::AllBrokersDown, KafkaFailure::Unavailable),
            (
                RDKafkaErrorCode::OperationTimedOut,
                KafkaFailure::Unavailable,
            ),
            (
                RDKafkaErrorCode::SaslAuthenticationFailed,
                KafkaFailure::Authentication,
            ),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                KafkaFailure::Authorization,
            ),
            (RDKafkaErrorCode::InvalidConfig, KafkaFailure::Other),
        ];
        for (code, failure) in cases {
            assert_eq!(failure_of(code), failure, "{code:?}");
        }
    }

    #[test]
    fn the_client_error_stays_the_source_and_the_context_leads_the_message() {
        let err = kafka_error(
            "fetch watermarks of t/0",
            KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert_eq!(
            err.kind(),
            kvault_domain::error::ErrorKind::Kafka(KafkaFailure::Unavailable)
        );
        assert!(err.to_string().contains("fetch watermarks of t/0"), "{err}");
        // The chain: the domain's error, this crate's, librdkafka's.
        let ours = std::error::Error::source(&err).unwrap();
        assert!(ours.downcast_ref::<ClusterError>().is_some(), "{ours:?}");
        let client = std::error::Error::source(ours).unwrap();
        assert!(client.downcast_ref::<KafkaError>().is_some(), "{client:?}");
    }
}
