//! `GET /api/kafka/backups/{backup_id}/records`: records read straight out of a backup, in
//! offset order, a page at a time, optionally filtered by a CEL expression.

use actix_web::{get, web, HttpResponse};
use kvault_domain::browse::{read_page, BrowseQuery, RecordPage};
use kvault_domain::DomainError;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Authed, Viewer};
use crate::error::{ApiError, ErrorBody};
use crate::routes::backups::manifest;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Only this partition; without it, every partition in ascending order.
    pub partition: Option<i32>,
    /// First offset to return (needs `partition`).
    pub from_offset: Option<i64>,
    /// Only records with a timestamp at or after this: RFC 3339 or epoch milliseconds.
    pub from_time: Option<String>,
    /// Records per page, 1..=10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    /// A CEL expression over the same variables as a migration's `filter_expression`.
    pub filter: Option<String>,
    /// The `next` value of the previous page.
    pub cursor: Option<String>,
}

/// Read records out of a backup: key, value and header values as UTF-8 text when valid UTF-8,
/// else base64 (`*_encoding` says which). Page with `next` → `cursor`.
#[utoipa::path(
    get, path = "/api/kafka/backups/{backup_id}/records", tag = "backups",
    params(("backup_id" = String, Path), RecordsQuery),
    responses(
        (status = 200, body = RecordPage),
        (status = 400, description = "bad limit, time, cursor or filter", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
#[get("/api/kafka/backups/{backup_id}/records")]
pub async fn read_records(
    auth: Authed<Viewer>,
    path: web::Path<String>,
    query: web::Query<RecordsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let browse = BrowseQuery::new(
        q.partition,
        q.from_offset,
        q.from_time.as_deref(),
        q.limit,
        q.cursor.as_deref(),
    )?;
    let filter = q
        .filter
        .as_deref()
        .map(|expr| state.filters.compile(expr))
        .transpose()?;
    let (id, m) = manifest(&state, &path, &auth).await?;
    if let Some(p) = browse.partition {
        if m.partition(p).is_none() {
            return Err(ApiError::not_found(
                "partition",
                p,
                format!("backup '{id}' has no partition {p}"),
            ));
        }
    }
    let store = state.store.clone();
    let runtime = tokio::runtime::Handle::current();
    let page = tokio::task::spawn_blocking(move || {
        read_page(&m, &browse, filter.as_deref(), |p, bounds| {
            runtime.block_on(store.read_partition(&id, p, bounds))
        })
    })
    .await
    .map_err(|e| DomainError::internal(format!("record reader failed: {e}")))??;
    Ok(HttpResponse::Ok().json(page))
}
