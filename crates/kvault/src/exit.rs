//! Failures of a CLI command: a message on stderr and an exit code per kind of failure, so a
//! pipeline can tell "fix your input" from "the archive is corrupt" from "try again".

use std::process::ExitCode;

use kvault_domain::{DomainError, ErrorCode};

/// Exit codes (also listed in the README).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID_INPUT: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_CONFLICT: u8 = 4;
pub const EXIT_CORRUPT: u8 = 5;
pub const EXIT_DRAIN_TIMEOUT: u8 = 6;
/// Kafka or the archive store could not be reached (retries ran out): try again later.
pub const EXIT_UNAVAILABLE: u8 = 7;
/// The archive store refused: bucket or directory missing, access denied. Fix the settings.
pub const EXIT_STORAGE_REFUSED: u8 = 8;
/// The Kafka cluster refused kvault's credentials (SASL user or password, a secret file that
/// cannot be read). Fix the settings; retrying will not help.
pub const EXIT_KAFKA_AUTHENTICATION: u8 = 9;
/// The TLS handshake with the Kafka cluster failed (unknown CA, hostname mismatch, expired
/// certificate, a listener that does not speak TLS). Fix the certificates or the settings.
pub const EXIT_KAFKA_TLS: u8 = 10;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(EXIT_FAILED, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(EXIT_INVALID_INPUT, message)
    }

    /// Settings that cannot work (a bad storage url, say).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_INVALID_INPUT, message)
    }

    pub fn report(self) -> ExitCode {
        eprintln!("error: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// The exit code of a failure's code, the same whether the command failed here or a job it
/// followed failed on the server.
pub fn exit_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::ValidationError => EXIT_INVALID_INPUT,
        ErrorCode::NotFound => EXIT_NOT_FOUND,
        ErrorCode::Conflict => EXIT_CONFLICT,
        ErrorCode::CorruptArchive => EXIT_CORRUPT,
        ErrorCode::KafkaUnavailable | ErrorCode::StorageUnavailable | ErrorCode::Unavailable => {
            EXIT_UNAVAILABLE
        }
        ErrorCode::StorageMissing | ErrorCode::StorageAccessDenied => EXIT_STORAGE_REFUSED,
        ErrorCode::KafkaAuthenticationFailed => EXIT_KAFKA_AUTHENTICATION,
        ErrorCode::KafkaTlsFailed => EXIT_KAFKA_TLS,
        _ => EXIT_FAILED,
    }
}

impl From<DomainError> for CliError {
    fn from(err: DomainError) -> Self {
        let code = exit_code(err.code());
        let message = match err.root() {
            DomainError::Validation(v) => format!(
                "{}: {} (value: {:?})",
                flag_of(&v.field),
                v.message,
                v.value
            ),
            _ => in_cli_terms(&err.to_string()),
        };
        Self::new(code, message)
    }
}

/// The command-line flag for a request field: flags are named like the JSON fields, kebab-case
/// (`target_topic` -> `--target-topic`, `transformation.filter_expression` ->
/// `--filter-expression`, `partitions[2]` -> `--partitions`).
pub fn flag_of(field: &str) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    let name = last.split('[').next().unwrap_or(last);
    format!("--{}", name.replace('_', "-"))
}

/// A message the API words for a JSON body, reworded for the command line.
fn in_cli_terms(message: &str) -> String {
    message.replace("set \"if_exists\": \"append\"", "pass --if-exists append")
}

impl From<kvault_domain::ValidationError> for CliError {
    fn from(err: kvault_domain::ValidationError) -> Self {
        DomainError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::ValidationError;

    #[test]
    fn validation_errors_name_the_flag() {
        let err: CliError =
            ValidationError::new("target_topic", "", "topic name must not be empty").into();
        assert_eq!(err.code, EXIT_INVALID_INPUT);
        assert_eq!(
            err.message,
            "--target-topic: topic name must not be empty (value: \"\")"
        );
        assert_eq!(
            flag_of("transformation.filter_expression"),
            "--filter-expression"
        );
        assert_eq!(flag_of("partitions[2]"), "--partitions");
    }

    #[test]
    fn the_append_hint_names_the_flag() {
        let err: CliError = kvault_domain::restore::IfExists::Fail
            .admit("events", 5, "restore")
            .unwrap_err()
            .into();
        assert_eq!(err.code, EXIT_CONFLICT);
        assert!(
            err.message.ends_with("or pass --if-exists append"),
            "{}",
            err.message
        );
    }
}
