//! The one error shape every response uses, `{error, message, details: {field, value}}`, the
//! mapping from domain errors to HTTP statuses, and the fallback that rewrites any non-JSON
//! error actix produces itself (unknown route, payload errors) into that shape.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use kvault_domain::error::ErrorKind;
use kvault_domain::{DomainError, KafkaFailure, StorageFailure, ValidationError};
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
    pub error: String,
    /// Human-readable message.
    pub message: String,
    pub details: ErrorDetails,
}

/// An error on its way to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub value: Option<String>,
    /// Seconds for the `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
    /// The domain's kind when this came from a [`DomainError`], so callers decide on an enum.
    pub cause: Option<ErrorKind>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            field: None,
            value: None,
            retry_after: None,
            cause: None,
        }
    }

    pub fn on(mut self, field: impl Into<String>, value: impl ToString) -> Self {
        self.field = Some(field.into());
        self.value = Some(value.to_string());
        self
    }

    pub fn bad_request(field: &str, value: impl ToString, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message).on(field, value)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn not_found(field: &str, value: impl ToString, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message).on(field, value)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
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
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("internal error (error id {id}; details are in the server log)"),
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind.to_owned(),
            message: self.message.clone(),
            details: ErrorDetails {
                field: self.field.clone(),
                value: self.value.clone(),
            },
        }
    }

    /// Rebuilds an error from a body stored with a failed job.
    pub fn from_body(status: StatusCode, body: &ErrorBody) -> Self {
        Self {
            status,
            kind: kind_name(&body.error),
            message: body.message.clone(),
            field: body.details.field.clone(),
            value: body.details.value.clone(),
            retry_after: None,
            cause: None,
        }
    }
}

/// Maps a stored error type back to its static name (only known names are ever stored).
fn kind_name(raw: &str) -> &'static str {
    const KINDS: [&str; 20] = [
        "LimitExceeded",
        "Interrupted",
        "Unavailable",
        "ValidationError",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Conflict",
        "TooManyRequests",
        "InternalError",
        "CorruptArchive",
        "Cancelled",
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "MethodNotAllowed",
        "KafkaUnavailable",
        "KafkaAuthenticationFailed",
        "KafkaTlsFailed",
        "KafkaUnauthorized",
        "KafkaError",
    ];
    KINDS
        .into_iter()
        .find(|k| *k == raw)
        .unwrap_or("InternalError")
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
        let cause = e.kind();
        let mut err = from_domain(e);
        err.cause = Some(cause);
        err
    }
}

fn from_domain(e: DomainError) -> ApiError {
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
        // A limit that retrying cannot help with (retry_after 0), such as
        // `max_backup_size_gb`, is not "too many requests": it is an unprocessable request.
        DomainError::LimitExceeded {
            message,
            retry_after_secs: 0,
        } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "LimitExceeded", message),
        DomainError::LimitExceeded {
            message,
            retry_after_secs,
        } => ApiError::too_many(message, retry_after_secs),
        // The archive is damaged: the client cannot fix that by retrying, and the message
        // names only the backup, so it is safe to show.
        DomainError::CorruptArchive { backup_id, reason } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CorruptArchive",
            format!("backup '{backup_id}' is corrupt: {reason}"),
        )
        .on("backup_id", backup_id),
        DomainError::Cancelled => {
            ApiError::new(StatusCode::CONFLICT, "Cancelled", "the job was cancelled")
        }
        // The message says what was found on the target; it names only topics and offsets.
        DomainError::Interrupted { message } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Interrupted", message)
        }
        // Keep the cause's status and say what the operation had done when it happened.
        DomainError::WithContext {
            context, source, ..
        } => {
            let mut inner = from_domain(*source);
            if inner.kind != "InternalError" {
                inner.message = format!("{context}: {}", inner.message);
            } else {
                tracing::error!(%context, "the failed operation had done this");
            }
            inner
        }
        DomainError::Kafka {
            failure, message, ..
        } => from_kafka(failure, message),
        DomainError::Storage {
            failure, message, ..
        } => from_storage(failure, message),
        other => ApiError::internal(other),
    }
}

fn from_kafka(failure: KafkaFailure, message: String) -> ApiError {
    tracing::warn!(?failure, %message, "kafka failure");
    let (status, kind) = match failure {
        KafkaFailure::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "KafkaUnavailable"),
        KafkaFailure::Authentication => (StatusCode::BAD_GATEWAY, "KafkaAuthenticationFailed"),
        KafkaFailure::Tls => (StatusCode::BAD_GATEWAY, "KafkaTlsFailed"),
        KafkaFailure::Authorization => (StatusCode::BAD_GATEWAY, "KafkaUnauthorized"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "KafkaError"),
    };
    ApiError::new(status, kind, format!("kafka: {message}"))
}

fn from_storage(failure: StorageFailure, message: String) -> ApiError {
    tracing::warn!(?failure, %message, "archive store failure");
    let (status, kind) = match failure {
        StorageFailure::Full => (StatusCode::INSUFFICIENT_STORAGE, "StorageFull"),
        StorageFailure::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "StorageUnavailable"),
        StorageFailure::PermissionDenied => {
            (StatusCode::INTERNAL_SERVER_ERROR, "StorageAccessDenied")
        }
        StorageFailure::Missing => (StatusCode::INTERNAL_SERVER_ERROR, "StorageMissing"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "StorageError"),
    };
    ApiError::new(status, kind, format!("archive store: {message}"))
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

/// The error type name and message used when actix itself answered with an error status.
fn generic_for(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => ("NotFound", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("MethodNotAllowed", "method not allowed on this route"),
        StatusCode::PAYLOAD_TOO_LARGE => ("PayloadTooLarge", "request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UnsupportedMediaType", "unsupported content type"),
        StatusCode::UNAUTHORIZED => ("Unauthorized", "authentication required"),
        StatusCode::FORBIDDEN => ("Forbidden", "forbidden"),
        StatusCode::TOO_MANY_REQUESTS => ("TooManyRequests", "too many requests"),
        s if s.is_client_error() => ("BadRequest", "bad request"),
        _ => ("InternalError", "internal error"),
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
        error: kind.to_owned(),
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
            (StatusCode::SERVICE_UNAVAILABLE, "KafkaUnavailable")
        );
        assert!(e.message.contains("cluster 'dr'"), "{}", e.message);
        // A refused password or certificate is the cluster's answer, not an outage.
        for (failure, kind) in [
            (KafkaFailure::Authentication, "KafkaAuthenticationFailed"),
            (KafkaFailure::Tls, "KafkaTlsFailed"),
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
            (StatusCode::INSUFFICIENT_STORAGE, "StorageFull")
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
        assert_eq!((e.status.as_u16(), e.kind), (422, "LimitExceeded"));
    }

    #[test]
    fn stored_bodies_round_trip() {
        let e = ApiError::bad_request("topic", "", "empty");
        let back = ApiError::from_body(StatusCode::BAD_REQUEST, &e.body());
        assert_eq!(back.kind, "ValidationError");
        assert_eq!(back.body(), e.body());
    }
}
