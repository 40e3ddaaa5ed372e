//! The answer for requests no route takes: 405 with `Allow` for a documented path asked with
//! another method, 404 otherwise, both in the documented error body.

use std::sync::OnceLock;

use actix_web::HttpRequest;
use kvault_domain::ErrorCode;
use utoipa::OpenApi;

use crate::error::ApiError;

/// Every documented `(path template, METHOD)`, from the OpenAPI document.
fn route_table() -> &'static [(String, String)] {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let doc = serde_json::to_value(crate::http::routes::openapi::ApiDoc::openapi())
            .unwrap_or_default();
        let mut table = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                table.push((path.clone(), method.to_uppercase()));
            }
        }
        table
    })
}

fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// 405 (with `Allow`) for a known path with another method, 404 otherwise; both in the
/// documented shape.
pub(crate) async fn unknown_route(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed: Vec<&str> = route_table()
        .iter()
        .filter(|(template, _)| template_matches(template, req.path()))
        .map(|(_, method)| method.as_str())
        .collect();
    if allowed.is_empty() {
        return Err(ApiError::not_found(
            "path",
            req.path(),
            format!("no route for {} {}", req.method(), req.path()),
        ));
    }
    let err = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; use {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ),
    )
    .on("method", req.method());
    let mut resp = actix_web::ResponseError::error_response(&err);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        resp.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    Ok(resp)
}
