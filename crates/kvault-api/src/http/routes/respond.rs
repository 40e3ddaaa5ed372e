//! The tail every job-starting handler shares: wait for the job and answer with its result, or
//! answer `202 Accepted` with where to poll (`?wait=false` / `Prefer: respond-async`).

use actix_web::http::header;
use actix_web::HttpResponse;
use kvault_domain::{JobId, JobKind, JobState};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::engine::runner::{self, JobOutcome};
use crate::error::ApiError;

/// The answer to `?wait=false` / `Prefer: respond-async`: where to poll.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedJob {
    pub job_id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    /// `GET` this to follow the job.
    pub location: String,
}

/// Waits for the job, or answers 202 with a `Location`.
pub(crate) async fn respond(
    wait: bool,
    kind: JobKind,
    id: JobId,
    handle: JoinHandle<JobOutcome>,
) -> Result<HttpResponse, ApiError> {
    if wait {
        let value = runner::wait(handle).await?;
        return Ok(HttpResponse::Ok().json(value));
    }
    let location = format!("/api/kafka/jobs/{id}");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location.clone()))
        .json(AcceptedJob {
            job_id: id,
            kind,
            state: JobState::Running,
            location,
        }))
}
