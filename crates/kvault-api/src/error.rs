//! The one error shape every response uses, `{error, message, details: {field, value}}`, the
//! HTTP status of every [`ErrorCode`] (the code itself is the domain's), the mapping from
//! domain errors, and the fallback that rewrites any non-JSON
//! error actix produces itself (unknown route, payload errors) into that shape.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use kvault_domain::{DomainError, ErrorCode, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which field and value caused an error; both are `null` when no single field is at fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetails {
    pub field: Option<String>,
    pub value: Option<String>,
}

/// The documented error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Error type, e.g. `ValidationError`, `NotFound`, `Unauthorized`.
    pub error: ErrorCode,
    /// Human-readable message.
    pub message: String,
    pub details: ErrorDetails,
}

/// An error on its way to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub value: Option<String>,
    /// Seconds for the `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

/// The HTTP status a code answers with.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        ValidationError | BadRequest => StatusCode::BAD_REQUEST,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Conflict | Cancelled => StatusCode::CONFLICT,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        // The archive is damaged, or a limit retrying cannot help with: the client cannot fix
        // it by retrying, and it is not "too many requests".
        LimitExceeded | BudgetExceeded | CorruptArchive => StatusCode::UNPROCESSABLE_ENTITY,
        Interrupted | Unavailable | KafkaUnavailable | StorageUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // A refused password or certificate is the cluster's answer, not an outage.
        KafkaAuthenticationFailed | KafkaTlsFailed | KafkaUnauthorized => StatusCode::BAD_GATEWAY,
        StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error with `kind`'s status.
    pub fn new(kind: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: status_of(kind),
            kind,
            message: message.into(),
            field: None,
            value: None,
            retry_after: None,
        }
    }

    pub fn on(mut self, field: impl Into<String>, value: impl ToString) -> Self {
        self.field = Some(field.into());
        self.value = Some(value.to_string());
        self
    }

    pub fn bad_request(field: &str, value: impl ToString, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message).on(field, value)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(field: &str, value: impl ToString, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message).on(field, value)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(ErrorCode::TooManyRequests, message);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// A server-side failure: the cause goes to the log under an error id, the client gets only
    /// the id, so no paths, broker addresses or SQL reach the outside.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::error!(error_id = id, cause = %cause, "request failed");
        Self::new(
            ErrorCode::InternalError,
            format!("internal error (error id {id}; details are in the server log)"),
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind,
            message: self.message.clone(),
            details: ErrorDetails {
                field: self.field.clone(),
                value: self.value.clone(),
            },
        }
    }

    /// Rebuilds an error from a body stored with a failed job, under the status it was stored
    /// with.
    pub fn from_body(status: StatusCode, body: &ErrorBody) -> Self {
        Self {
            status,
            kind: body.error,
            message: body.message.clone(),
            field: body.details.field.clone(),
            value: body.details.value.clone(),
            retry_after: None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(self.body())
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::bad_request(&e.field, &e.value, e.message)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let code = e.code();
        match e {
            DomainError::Validation(v) => v.into(),
            DomainError::NotFound { kind, name } => {
                ApiError::not_found(kind.field(), &name, format!("{kind} '{name}' not found"))
            }
            DomainError::Conflict {
                message,
                field,
                value,
            } => {
                let mut err = ApiError::conflict(message);
                err.field = field;
                err.value = value;
                err
            }
            DomainError::LimitExceeded {
                message,
                retry_after_secs,
            } => {
                let mut err = ApiError::new(code, message);
                err.retry_after = (retry_after_secs > 0).then_some(retry_after_secs);
                err
            }
            // The message names only the backup, so it is safe to show.
            DomainError::CorruptArchive { backup_id, reason } => {
                ApiError::new(code, format!("backup '{backup_id}' is corrupt: {reason}"))
                    .on("backup_id", backup_id)
            }
            DomainError::Cancelled => ApiError::new(code, "the job was cancelled"),
            // The message says what was found on the target; it names only topics and offsets.
            DomainError::Interrupted { message } => ApiError::new(code, message),
            // Keep the cause's status and say what the operation had done when it happened.
            DomainError::WithContext {
                context, source, ..
            } => {
                let mut inner = ApiError::from(*source);
                if inner.kind != ErrorCode::InternalError {
                    inner.message = format!("{context}: {}", inner.message);
                } else {
                    tracing::error!(%context, "the failed operation had done this");
                }
                inner
            }
            DomainError::Kafka {
                failure, message, ..
            } => {
                tracing::warn!(?failure, %message, "kafka failure");
                ApiError::new(code, format!("kafka: {message}"))
            }
            DomainError::Storage {
                failure, message, ..
            } => {
                tracing::warn!(?failure, %message, "archive store failure");
                ApiError::new(code, format!("archive store: {message}"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

/// The error type name and message used when actix itself answered with an error status.
fn generic_for(status: StatusCode) -> (ErrorCode, &'static str) {
    match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorCode::UnsupportedMediaType, "unsupported content type")
        }
        StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "authentication required"),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, "forbidden"),
        StatusCode::TOO_MANY_REQUESTS => (ErrorCode::TooManyRequests, "too many requests"),
        s if s.is_client_error() => (ErrorCode::BadRequest, "bad request"),
        _ => (ErrorCode::InternalError, "internal error"),
    }
}

/// `ErrorHandlers` default handler: any error response that is not already JSON (actix's own
/// text bodies) gets the documented body instead.
pub fn json_fallback<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (kind, message) = generic_for(status);
    if status.is_server_error() {
        tracing::error!(
            status = status.as_u16(),
            path = res.request().path(),
            "unhandled server error"
        );
    }
    let body = ErrorBody {
        error: kind,
        message: message.to_owned(),
        details: ErrorDetails {
            field: None,
            value: None,
        },
    };
    let json = serde_json::to_string(&body).unwrap_or_default();
    let (req, mut resp) = res.into_parts();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let resp = resp.set_body(json).map_into_boxed_body();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, resp).map_into_right_body::<B>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvault_domain::{KafkaFailure, StorageFailure};

    #[test]
    fn domain_errors_map_to_documented_statuses() {
        let e: ApiError =
            DomainError::not_found(kvault_domain::error::Missing::Topic, "events").into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.field.as_deref(), Some("topic"));
        let e: ApiError = DomainError::conflict_on("not empty", "target_topic", "t").into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.value.as_deref(), Some("t"));
        // Faults the caller can act on say what failed instead of an opaque 500.
        let e: ApiError = DomainError::Kafka {
            failure: KafkaFailure::Unavailable,
            message: "no broker of cluster 'dr' answered".into(),
            source: None,
        }
        .into();
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::KafkaUnavailable)
        );
        assert!(e.message.contains("cluster 'dr'"), "{}", e.message);
        // A refused password or certificate is the cluster's answer, not an outage.
        for (failure, kind) in [
            (
                KafkaFailure::Authentication,
                ErrorCode::KafkaAuthenticationFailed,
            ),
            (KafkaFailure::Tls, ErrorCode::KafkaTlsFailed),
        ] {
            let e: ApiError = DomainError::Kafka {
                failure,
                message: "cluster 'prod': refused".into(),
                source: None,
            }
            .into();
            assert_eq!((e.status, e.kind), (StatusCode::BAD_GATEWAY, kind));
            let back = ApiError::from_body(e.status, &e.body());
            assert_eq!(back.kind, kind);
        }
        let e: ApiError = DomainError::Storage {
            failure: StorageFailure::Full,
            message: "no space left writing b1.partial/p0/x.seg".into(),
            source: None,
        }
        .into();
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::StorageFull)
        );
        // Context keeps the cause's status: a conflict found mid-run is still a 409.
        let e: ApiError = DomainError::conflict("target holds messages")
            .context("restore stopped after 5 records to partition 0")
            .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(
            e.message.starts_with("restore stopped after 5"),
            "{}",
            e.message
        );
        let e: ApiError = DomainError::internal("secret sauce")
            .context("step 2")
            .into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret sauce"), "{}", e.message);
        let e: ApiError = DomainError::LimitExceeded {
            message: "busy".into(),
            retry_after_secs: 3,
        }
        .into();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(3)));
        let e: ApiError = DomainError::LimitExceeded {
            message: "too big".into(),
            retry_after_secs: 0,
        }
        .into();
        assert_eq!((e.status.as_u16(), e.kind), (422, ErrorCode::LimitExceeded));
    }

    #[test]
    fn stored_bodies_round_trip() {
        let e = ApiError::bad_request("topic", "", "empty");
        let back = ApiError::from_body(StatusCode::BAD_REQUEST, &e.body());
        assert_eq!(back.kind, ErrorCode::ValidationError);
        assert_eq!(back.body(), e.body());
        // Every code a failed job may store reads back as itself, through the stored JSON
        // (the table of names this replaced had lost the storage codes).
        let e = ApiError::new(ErrorCode::StorageFull, "no space");
        let stored = serde_json::to_value(e.body()).unwrap();
        assert_eq!(stored["error"], "StorageFull");
        let body: ErrorBody = serde_json::from_value(stored).unwrap();
        let back = ApiError::from_body(e.status, &body);
        assert_eq!((back.status, back.kind), (e.status, ErrorCode::StorageFull));
    }
}
