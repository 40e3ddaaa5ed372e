//! How a job ended: the outcome a synchronous caller sees, the state, result and error body it
//! is stored as, and the error rebuilt from a stored body.

use actix_web::http::StatusCode;
use kvault_domain::job::OperationControl;
use kvault_domain::ErrorCode;
use kvault_domain::JobState;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::error::{ApiError, ErrorBody};

/// How a job ended, as the synchronous caller sees it.
pub type JobOutcome = Result<serde_json::Value, ApiError>;

/// The state, result and error body a job's outcome is stored as.
pub(crate) fn ending(
    control: &OperationControl,
    outcome: &JobOutcome,
) -> (
    JobState,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
) {
    match outcome {
        Ok(value) => (JobState::Completed, Some(value.clone()), None),
        Err(e) => {
            let state = if e.kind == ErrorCode::Interrupted {
                JobState::Interrupted
            } else if control.is_cancelled() || e.kind == ErrorCode::Cancelled {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            let body = serde_json::json!({
                "status": e.status.as_u16(),
                "body": e.body(),
            });
            (state, None, Some(body))
        }
    }
}

/// Rebuilds the HTTP error stored with a failed job.
pub fn stored_error(error: &serde_json::Value) -> ApiError {
    let status = error
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match error
        .get("body")
        .cloned()
        .map(serde_json::from_value::<ErrorBody>)
    {
        Some(Ok(body)) => ApiError::from_body(status, &body),
        _ => ApiError::internal("a stored job error is unreadable"),
    }
}

/// Awaits a job's task and turns a panic into an opaque 500.
pub async fn wait(handle: JoinHandle<JobOutcome>) -> JobOutcome {
    match handle.await {
        Ok(outcome) => outcome,
        Err(e) => Err(ApiError::internal(format!("job task failed: {e}"))),
    }
}

/// A job's result as the JSON stored in its row and returned to the client.
pub(crate) fn to_json<T: Serialize>(value: &T) -> JobOutcome {
    serde_json::to_value(value).map_err(ApiError::internal)
}
