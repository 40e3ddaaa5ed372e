//! librdkafka's errors turned into the domain's: the error code decides what a caller can act
//! on ([`KafkaFailure`]: unreachable, bad credentials, not allowed, other), the original error
//! stays the `source`, and the message says what kvault was doing.

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

/// Turns a client error into the domain's Kafka error, saying what kvault was doing.
pub fn kafka_error(context: impl std::fmt::Display, error: KafkaError) -> DomainError {
    let failure = error
        .rdkafka_error_code()
        .map_or(KafkaFailure::Other, failure_of);
    DomainError::Kafka {
        failure,
        message: format!("{context}: {error}"),
        source: Some(Box::new(error)),
    }
}

/// An error code the broker answered for one resource (a topic, a config), as a domain error.
pub fn code_error(context: impl std::fmt::Display, code: RDKafkaErrorCode) -> DomainError {
    DomainError::Kafka {
        failure: failure_of(code),
        message: format!("{context}: {code}"),
        source: None,
    }
}

/// A message already written, classified by the code when there is one.
pub fn message_error(code: Option<RDKafkaErrorCode>, message: String) -> DomainError {
    DomainError::Kafka {
        failure: code.map_or(KafkaFailure::Other, failure_of),
        message,
        source: None,
    }
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
        assert!(std::error::Error::source(&err).is_some());
    }
}
