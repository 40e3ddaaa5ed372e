//! [`OperationStatus`]: how a finished operation ended, as every result reports it. A leaf
//! module, so the results (backup, restore) and the job model can all name it.

use serde::{Deserialize, Serialize};

/// How a finished operation ended, in its result (`"status": "completed"`). Failures and
/// cancellations are errors, not results; `nothing_new` is the result of a scheduled
/// incremental run that found no record since the run it continues and wrote no archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperationStatus {
    Completed,
    NothingNew,
}
