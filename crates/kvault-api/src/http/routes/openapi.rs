//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json`.

use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::http::auth::{Authed, Viewer};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kvault",
        description = "Back up, restore, migrate and drain Kafka topics. Every error uses the ErrorBody shape."
    ),
    paths(
        super::operations::backup,
        super::operations::restore,
        super::operations::migrate,
        super::operations::drain,
        super::jobs::list_jobs,
        super::jobs::get_job,
        super::jobs::cancel_job,
        super::backups::list_backups,
        super::backups::get_backup,
        super::backups::delete_backup,
        super::backups::verify_backup,
        super::records::read_records,
        super::metrics::metrics,
        super::metrics::prometheus,
        super::metrics::health,
        super::metrics::ready,
        super::schedules::create_schedule,
        super::schedules::list_schedules,
        super::schedules::get_schedule,
        super::schedules::delete_schedule,
        openapi_json,
    ),
    // A job's `result` is free-form; a scheduled run that found nothing new has this shape.
    components(schemas(ErrorBody, kvault_domain::backup::NothingNewResult)),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers every route of a kind can give, added where a handler's annotation does not
/// list them, so the document names every status the server returns (clients generated from
/// it, and fuzzers checking conformance, rely on that): 400 for a malformed parameter or body,
/// 401/403/429 on every route behind a token, 413/415 where there is a body, 429 on the open
/// routes (per-address limit), and 500/503 for internal and unavailable dependencies.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::HttpMethod;
        for item in openapi.paths.paths.values_mut() {
            for param in item.parameters.iter_mut().flatten() {
                constrain(param);
            }
            let has_path_params = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
            for (method, operation) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                let Some(op) = operation else { continue };
                for param in op.parameters.iter_mut().flatten() {
                    constrain(param);
                }
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let takes_input = has_path_params
                    || op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                    || op.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                };
                if takes_input || method == HttpMethod::Post {
                    add(
                        "400",
                        "Invalid parameter or body (`details.field` names it)",
                    );
                }
                if secured {
                    add("401", "Missing, invalid or expired token");
                    add(
                        "403",
                        "The token's role or `clusters` claim does not allow this",
                    );
                    add(
                        "429",
                        "Rate limit of the token's subject reached (`Retry-After`)",
                    );
                } else {
                    add(
                        "429",
                        "Rate limit of this client address reached (`Retry-After`)",
                    );
                }
                if op.request_body.is_some() {
                    add("413", "Request body larger than `server.max_body_bytes`");
                    add("415", "Request body not `application/json`");
                }
                add(
                    "500",
                    "Internal error (`details.error_id` to find it in the logs)",
                );
                if secured {
                    add(
                        "503",
                        "The job database or the archive store is unavailable",
                    );
                }
            }
        }
    }
}

/// The rules the server enforces on identifiers in paths and queries, as schema constraints.
fn constrain(param: &mut utoipa::openapi::path::Parameter) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    // Query filters (`?topic=`, `?cluster_id=`) match nothing when malformed; only path
    // identifiers are refused.
    if !matches!(param.parameter_in, ParameterIn::Path) {
        return;
    }
    let schema = match param.name.as_str() {
        "backup_id" | "cluster_id" => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ID_PATTERN)),
        "job_id" => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        "topic" => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TOPIC_PATTERN)),
        _ => return,
    };
    param.schema = Some(schema.build().into());
}

/// Backup and cluster ids: path-safe names (`kvault_domain::BackupId`).
const ID_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$";
/// Kafka topic names.
const TOPIC_PATTERN: &str = "^[A-Za-z0-9._-]{1,249}$";

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "monitoring",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")),
    security(("bearer" = []))
)]
#[get("/api/openapi.json")]
pub async fn openapi_json(_auth: Authed<Viewer>) -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
