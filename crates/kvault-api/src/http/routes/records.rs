//! `GET /api/kafka/backups/{backup_id}/records`: records read straight out of a backup, in
//! offset order, a page at a time, optionally filtered by a CEL expression.
//!
//! Reading record contents needs the data permission ([`Authed::require_data`]) and is
//! audited. One page is bounded: `limit` records, `browse.page_max_bytes`, values cut to
//! `browse.value_preview_bytes`, `browse.deadline_secs`, and `browse.max_concurrent` reads at
//! once. The page is streamed as it is read; when the client goes away the read stops.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::web::Bytes;
use actix_web::{get, web, HttpResponse};
use futures::Stream;
use kvault_domain::browse::RecordView;
use kvault_domain::browse::{stream_page, BrowseQuery, PageEnd, PageSink, Pushed, RecordPage};
use kvault_domain::cel_limits::{BudgetExceeded, EvalBudget};
use kvault_domain::ports::{ArchiveStore, RecordFilter};
use kvault_domain::ErrorCode;
use kvault_domain::{BackupId, DomainError, Manifest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use utoipa::IntoParams;

use crate::configuration::BrowseSettings;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{Authed, Viewer};
use crate::http::routes::backups::manifest;
use crate::http::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Only this partition; without it, every partition in ascending order.
    pub partition: Option<i32>,
    /// First offset to return (needs `partition`).
    pub from_offset: Option<i64>,
    /// Only records with a timestamp at or after this: RFC 3339 or epoch milliseconds.
    pub from_time: Option<String>,
    /// Records per page, 1..=10000 (default 100). A page also ends at the byte budget
    /// (`truncated_by`).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    /// A CEL expression over the same variables as a migration's `filter_expression`.
    pub filter: Option<String>,
    /// The `next` value of the previous page.
    pub cursor: Option<String>,
    /// Return values whole instead of cut to the preview size (still within the page's byte
    /// budget; a page holds at least one record).
    pub full_values: Option<bool>,
}

/// Read records out of a backup: key, value and header values as UTF-8 text when valid UTF-8,
/// else base64 (`*_encoding` says which). Page with `next` → `cursor`. Needs the data
/// permission: role operator or above, or a viewer token with `"data": true`.
#[utoipa::path(
    get, path = "/api/kafka/backups/{backup_id}/records", tag = "backups",
    params(("backup_id" = String, Path), RecordsQuery),
    responses(
        (status = 200, description = "one page; `truncated_by` says why it ended early, \
            `value_truncated`/`value_size` mark cut values", body = RecordPage),
        (status = 400, description = "bad limit, time, cursor, or a filter refused when \
            compiled (syntax, unknown variable, nested comprehensions)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the token lacks the data permission", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "the filter found nothing within the page's time \
            budget; `details.value` is the cursor to continue from", body = ErrorBody),
        (status = 429, description = "too many record reads at once", body = ErrorBody)
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
    auth.require_data()?;
    let q = query.into_inner();
    let settings = &state.settings.browse;
    let browse = page_query(&q, settings)?;
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
    audit(&auth, id.as_str(), &browse, q.filter.as_deref());
    // Set when this request's future or its response stream is dropped: the client is gone.
    let cancel = CancelOnDrop::default();
    let deadline = Instant::now() + settings.deadline();
    let permit = tokio::time::timeout_at(deadline.into(), state.browses.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::too_many("too many record reads at once; retry shortly", 1))?
        .map_err(ApiError::internal)?;
    let budget = EvalBudget::new(Some(deadline), Some(Arc::clone(&cancel.0)));
    let backup_id = m.backup_id.clone();
    let reading = PageRead {
        manifest: m,
        id,
        browse,
        filter,
        budget,
    };
    let mut rx = reading.start(state.archives.clone(), permit);
    let first = rx
        .recv()
        .await
        .ok_or_else(|| ApiError::internal("record reader stopped without an answer"))?;
    let first = match first {
        Event::Failed(e) => return Err(e.into()),
        Event::End(end) if end.sent == 0 && end.budget == Some(BudgetExceeded::Deadline) => {
            return Err(timed_out(&end, settings.deadline_secs))
        }
        other => other,
    };
    let head = format!(
        "{{\"backup_id\":{},\"records\":[",
        serde_json::Value::String(backup_id)
    );
    let body = PageStream {
        pending: vec![first],
        head: Some(Bytes::from(head)),
        rx,
        done: false,
        _cancel: cancel,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(body))
}

/// The page the query asks for, within this server's byte budget and value preview.
fn page_query(q: &RecordsQuery, settings: &BrowseSettings) -> Result<BrowseQuery, ApiError> {
    let mut browse = BrowseQuery::new(
        q.partition,
        q.from_offset,
        q.from_time.as_deref(),
        q.limit,
        q.cursor.as_deref(),
    )?;
    browse.max_bytes = settings.page_max_bytes;
    browse.value_cap = (!q.full_values.unwrap_or(false)).then_some(settings.value_preview_bytes);
    Ok(browse)
}

/// One page being read on a blocking thread, its records sent on as they match.
struct PageRead {
    manifest: Manifest,
    id: BackupId,
    browse: BrowseQuery,
    filter: Option<Box<dyn RecordFilter>>,
    budget: EvalBudget,
}

impl PageRead {
    /// Starts the reader under `permit`; the receiver gets the records, then how it ended.
    fn start(
        self,
        store: Arc<dyn ArchiveStore>,
        permit: OwnedSemaphorePermit,
    ) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(4);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut sink = ChannelSink(tx.clone());
            let end = stream_page(
                &self.manifest,
                &self.browse,
                self.filter.as_deref(),
                &self.budget,
                &mut sink,
                |p, b| runtime.block_on(store.read_partition(&self.id, p, b)),
            );
            let _ = tx.blocking_send(match end {
                Ok(end) => Event::End(end),
                Err(e) => Event::Failed(e),
            });
        });
        rx
    }
}

/// The 422 of a page whose time budget ran out before anything matched.
fn timed_out(end: &PageEnd, deadline_secs: u64) -> ApiError {
    let next = end.next.clone().unwrap_or_default();
    ApiError::new(
        ErrorCode::BudgetExceeded,
        format!(
            "the filter matched nothing within the page's time budget ({deadline_secs} s); \
             continue with cursor={next} or narrow the filter"
        ),
    )
    .on("filter", next)
}

/// One audit event per read of record contents: who, which backup, which partitions and
/// where from, and a hash of the filter (the filter itself may hold personal data).
fn audit<R>(auth: &Authed<R>, backup_id: &str, q: &BrowseQuery, filter: Option<&str>) {
    let filter_sha256 = filter.map(|f| {
        Sha256::digest(f.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    let partitions = q.partition.map_or("all".to_owned(), |p| p.to_string());
    tracing::info!(
        target: "kvault::audit",
        event = "record_contents_read",
        subject = auth.subject(),
        backup_id,
        partitions = %partitions,
        from_offset = ?q.cursor.map(|c| c.from_offset).or(q.from_offset),
        from_timestamp = ?q.from_timestamp,
        limit = q.limit,
        filter_sha256 = filter_sha256.as_deref().unwrap_or("none"),
        "record contents read"
    );
}

/// A flag set on drop.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the reading thread sends the response.
enum Event {
    /// One record, encoded (with its leading comma after the first).
    Record(Bytes),
    End(PageEnd),
    Failed(DomainError),
}

/// Encodes each record and hands it to the response through a bounded channel, so at most a
/// few records wait in memory however slowly the client reads.
struct ChannelSink(mpsc::Sender<Event>);

impl PageSink for ChannelSink {
    fn push(&mut self, record: RecordView, room: usize, first: bool) -> Pushed {
        let mut encoded = Vec::with_capacity(256);
        if !first {
            encoded.push(b',');
        }
        if serde_json::to_writer(&mut encoded, &record).is_err() {
            return Pushed::Gone;
        }
        drop(record);
        if encoded.len() > room && !first {
            return Pushed::NoRoom;
        }
        let used = encoded.len();
        match self.0.blocking_send(Event::Record(Bytes::from(encoded))) {
            Ok(()) => Pushed::Taken(used),
            Err(_) => Pushed::Gone,
        }
    }
}

/// The page's JSON, written as the reading thread produces it.
struct PageStream {
    head: Option<Bytes>,
    /// Events received before the response started.
    pending: Vec<Event>,
    rx: mpsc::Receiver<Event>,
    done: bool,
    _cancel: CancelOnDrop,
}

impl Stream for PageStream {
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        let event = match self.pending.pop() {
            Some(event) => event,
            None => match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(event)) => event,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(ApiError::internal("record reader stopped"))));
                }
            },
        };
        Poll::Ready(Some(match event {
            Event::Record(bytes) => Ok(bytes),
            Event::End(end) => {
                self.done = true;
                Ok(tail(&end))
            }
            Event::Failed(e) => {
                // The status is sent already: end the body short, so the client sees an
                // incomplete response rather than a page that looks whole.
                self.done = true;
                Err(ApiError::internal(format!(
                    "record read failed mid-page: {e}"
                )))
            }
        }))
    }
}

/// `],"next":...,"truncated_by":...}`.
fn tail(end: &PageEnd) -> Bytes {
    let rest = serde_json::json!({ "next": end.next, "truncated_by": end.truncated_by });
    let rest = rest.to_string();
    Bytes::from(format!("],{}", &rest[1..]))
}
