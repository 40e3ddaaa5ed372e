//! Failures of a CLI command: a message on stderr and an exit code per kind of failure, so a
//! pipeline can tell "fix your input" from "the archive is corrupt" from "try again".

use std::process::ExitCode;

use kvault_domain::DomainError;

/// Exit codes (also listed in the README).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID_INPUT: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_CONFLICT: u8 = 4;
pub const EXIT_CORRUPT: u8 = 5;
pub const EXIT_DRAIN_TIMEOUT: u8 = 6;

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

    pub fn report(self) -> ExitCode {
        eprintln!("error: {}", self.message);
        ExitCode::from(self.code)
    }
}

impl From<DomainError> for CliError {
    fn from(err: DomainError) -> Self {
        let code = match &err {
            DomainError::Validation(_) => EXIT_INVALID_INPUT,
            DomainError::NotFound { .. } => EXIT_NOT_FOUND,
            DomainError::Conflict { .. } => EXIT_CONFLICT,
            DomainError::CorruptArchive { .. } => EXIT_CORRUPT,
            _ => EXIT_FAILED,
        };
        let message = match &err {
            DomainError::Validation(v) => format!("{} (value: {:?})", v, v.value),
            other => other.to_string(),
        };
        Self::new(code, message)
    }
}

impl From<kvault_domain::ValidationError> for CliError {
    fn from(err: kvault_domain::ValidationError) -> Self {
        DomainError::from(err).into()
    }
}
