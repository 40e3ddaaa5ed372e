//! Request extractors that fail with the documented error body: the caller's verified token
//! ([`Authed`], with its role, rate and anonymous limits), a JSON body reader that names the
//! offending field, and the sync/async choice (`?wait=false`, `Prefer: respond-async`).

use std::future::{ready, Ready};
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::Future;
use kvault_domain::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::http::auth::{Authed, Claims, Role, RoleRequirement};
use crate::http::state::AppState;

/// A JSON body of type `T`. Checks the content type, the size cap and the shape, and says
/// which field was wrong.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(1024 * 1024, |s| s.settings.server.max_body_bytes);
        let length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if let Some(ct) = &content_type {
                let mime = ct.split(';').next().unwrap_or_default().trim();
                if !mime.eq_ignore_ascii_case("application/json") {
                    return Err(ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        "request bodies must be JSON (Content-Type: application/json)",
                    )
                    .on("Content-Type", ct));
                }
            }
            let too_large = |size: usize| {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body exceeds {limit} bytes"),
                )
                .on("body", format!("{size} bytes"))
            };
            if let Some(len) = length.filter(|l| *l > limit) {
                return Err(too_large(len));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = futures::StreamExt::next(&mut payload).await {
                let chunk = chunk.map_err(|e| {
                    ApiError::bad_request("body", "", format!("could not read the body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(body.len() + chunk.len()));
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(ApiJson)
        })
    }
}

/// Parses `bytes` as `T`; on failure, names the top-level field at fault where it can.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("body", snippet(bytes), format!("malformed JSON: {e}"))
    })?;
    let err = match serde_json::from_value::<T>(value.clone()) {
        Ok(v) => return Ok(v),
        Err(e) => e.to_string(),
    };
    if let Some(name) = backticked(&err, "unknown field `") {
        return Err(ApiError::bad_request(&name, &name, err));
    }
    if let Some(name) = backticked(&err, "missing field `") {
        return Err(ApiError::bad_request(&name, "", err));
    }
    // The culprit is the first field whose removal changes the error (serde stops at the
    // first bad value, so removing any other field leaves the same message).
    if let serde_json::Value::Object(map) = &value {
        for (key, v) in map {
            let mut trimmed = map.clone();
            trimmed.remove(key);
            let other = serde_json::from_value::<T>(serde_json::Value::Object(trimmed))
                .err()
                .map(|e| e.to_string());
            if other.as_deref() != Some(err.as_str()) {
                let shown = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return Err(ApiError::bad_request(key, shown, format!("{key}: {err}")));
            }
        }
    }
    Err(ApiError::bad_request("body", snippet(bytes), err))
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_owned)
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    text.into_owned()
}

/// `?wait=false` asks for `202 Accepted` and a `Location` instead of waiting for the job.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// `true` (default): answer when the job ends. `false`: answer 202 at once.
    pub wait: Option<bool>,
}

/// The query of the operations that can be dry-run (restore, migrate): `?wait=` as for any
/// job, and `?dry_run=true`, which answers the plan instead of running the operation.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// `true` (default): answer when the job ends. `false`: answer 202 at once.
    pub wait: Option<bool>,
    /// `true`: validate and plan as the real run would, write nothing, and answer 200 with
    /// the plan (no job is started; `wait` does not apply). Default `false`.
    pub dry_run: Option<bool>,
}

impl RunQuery {
    /// The `?wait=` part, for [`wants_wait`].
    pub fn wait(&self) -> WaitQuery {
        WaitQuery { wait: self.wait }
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

/// True when the caller wants the job's result in the response (the default).
pub fn wants_wait(req: &HttpRequest, query: &WaitQuery) -> bool {
    let prefers_async = req
        .headers()
        .get_all("Prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    query.wait.unwrap_or(true) && !prefers_async
}

/// Query-string errors in the documented shape.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request("query", "", format!("bad query string: {err}")).into()
}

/// Path errors in the documented shape (only reachable with non-string path parameters).
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("path", "", format!("bad path: {err}")).into()
}

fn authenticate(req: &HttpRequest, needed: Role) -> Result<Arc<Claims>, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from app data"))?;
    // A request without a valid token has no subject to count it under: its address pays,
    // and once that quota is spent the answer is 429 instead of 401.
    let claims = bearer_claims(req, state)
        .or_else(|refused| state.anonymous.check(req).and(Err(refused)))?;
    state.auth.check_rate(&claims.sub)?;
    let role = claims
        .role()
        .ok_or_else(|| ApiError::forbidden("the token grants no role"))?;
    if role < needed {
        return Err(ApiError::forbidden(format!(
            "role '{}' required, the token has '{}'",
            needed.as_str(),
            role.as_str()
        ))
        .on("roles", role.as_str()));
    }
    Ok(Arc::new(claims))
}

/// The verified claims of the request's bearer token.
fn bearer_claims(req: &HttpRequest, state: &AppState) -> Result<Claims, ApiError> {
    let raw = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <token> header")
                .on("Authorization", "")
        })?
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    state.auth.verify(token)
}

impl<R: RoleRequirement> FromRequest for Authed<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, R::ROLE).map(Authed::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use kvault_domain::BackupRequest;

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_json::<BackupRequest>(b"{\"topic\": ").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert!(e.message.starts_with("malformed JSON"));
        let e = parse_json::<BackupRequest>(br#"{"topic":"t","compresion":"gzip"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("compresion"));
        // `topic` may be left out for a backup set, so its absence is the validation's to name.
        let parsed = parse_json::<BackupRequest>(br#"{"compression":"gzip"}"#).unwrap();
        let defaults = kvault_domain::backup::BackupDefaults::default();
        let e = parsed.validate(defaults, chrono::Utc::now()).unwrap_err();
        assert_eq!(e.field, "topic");
        let e =
            parse_json::<BackupRequest>(br#"{"topic":"t","compression":"brotli"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("compression"));
        assert_eq!(e.value.as_deref(), Some("brotli"));
        let e = parse_json::<BackupRequest>(br#"{"topic":"t","max_messages":"lots"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("max_messages"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
