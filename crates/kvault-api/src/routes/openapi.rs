//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json`.

use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::{Authed, Viewer};
use crate::error::ErrorBody;

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
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
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
