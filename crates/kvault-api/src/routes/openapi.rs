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

/// A Postman v2.1 collection made from the OpenAPI document: one request per operation, with
/// `{{baseUrl}}` and a `{{token}}` bearer variable, example bodies for the POST routes.
pub fn postman_collection() -> serde_json::Value {
    use serde_json::json;
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let examples: std::collections::BTreeMap<&str, serde_json::Value> = [
        (
            "/api/kafka/clusters/{cluster_id}/backup",
            json!({"topic": "events", "compression": "gzip", "start_offset": "earliest", "end_offset": "latest", "include_headers": true, "include_keys": true, "rate_limit_per_second": 10000}),
        ),
        (
            "/api/kafka/clusters/{cluster_id}/restore",
            json!({"backup_id": "backup-1234567890", "target_topic": "events-restored", "preserve_offsets": false, "rate_limit_per_second": 5000, "validate_checksum": true}),
        ),
        (
            "/api/kafka/migrate",
            json!({"source_cluster": "local", "source_topic": "events", "target_cluster": "local", "target_topic": "events-copy", "transformation": {"header_additions": [["migrated-from", "local"]]}, "rate_limit_per_second": 8000}),
        ),
        (
            "/api/kafka/clusters/{cluster_id}/drain",
            json!({"group_id": "consumer-group-1", "topics": ["events"], "max_lag": 0, "timeout_seconds": 300, "check_interval_ms": 5000, "strategy": "lag_based"}),
        ),
    ]
    .into_iter()
    .collect();
    let mut folders: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        Default::default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                let postman_path = path
                    .replace("{cluster_id}", ":cluster_id")
                    .replace("{job_id}", ":job_id")
                    .replace("{backup_id}", ":backup_id");
                let segments: Vec<&str> = postman_path.trim_start_matches('/').split('/').collect();
                let variables: Vec<serde_json::Value> = segments
                    .iter()
                    .filter_map(|s| s.strip_prefix(':'))
                    .map(|name| {
                        let value = match name {
                            "cluster_id" => "local",
                            "job_id" => "{{job_id}}",
                            _ => "{{backup_id}}",
                        };
                        json!({"key": name, "value": value})
                    })
                    .collect();
                let mut request = json!({
                    "method": method.to_uppercase(),
                    "header": [],
                    "url": {
                        "raw": format!("{{{{baseUrl}}}}{postman_path}"),
                        "host": ["{{baseUrl}}"],
                        "path": segments,
                        "variable": variables,
                    },
                    "description": op["description"].as_str().or(op["summary"].as_str()).unwrap_or_default(),
                });
                if path.starts_with("/api/") {
                    request["auth"] = json!({"type": "bearer", "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}]});
                } else {
                    request["auth"] = json!({"type": "noauth"});
                }
                if let Some(body) = examples.get(path.as_str()) {
                    request["header"] =
                        json!([{"key": "Content-Type", "value": "application/json"}]);
                    request["body"] = json!({"mode": "raw", "raw": serde_json::to_string_pretty(body).unwrap_or_default(), "options": {"raw": {"language": "json"}}});
                }
                let name = op["summary"].as_str().map_or_else(
                    || format!("{} {path}", method.to_uppercase()),
                    str::to_owned,
                );
                let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                folders
                    .entry(tag)
                    .or_default()
                    .push(json!({"name": name, "request": request}));
            }
        }
    }
    json!({
        "info": {
            "name": "kvault",
            "description": "Generated from /api/openapi.json by `cargo run -p kvault-api --example export_docs`. Set baseUrl and token (mint one with `kvault token --sub you --role admin --ttl 1h`).",
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
        },
        "variable": [
            {"key": "baseUrl", "value": "http://localhost:8080"},
            {"key": "token", "value": ""},
            {"key": "job_id", "value": ""},
            {"key": "backup_id", "value": ""}
        ],
        "item": folders.into_iter().map(|(name, items)| json!({"name": name, "item": items})).collect::<Vec<_>>(),
    })
}
