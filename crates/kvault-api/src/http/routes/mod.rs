//! HTTP handlers, one module per resource, and the table that mounts them.

pub mod backup_sets;
pub mod backups;
pub mod fallback;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod operations;
pub mod records;
pub mod respond;
pub mod restore_sets;
pub mod schedules;

use actix_web::web;

/// Mounts every route. The OpenAPI document lists the same handlers (see [`openapi::ApiDoc`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(operations::backup)
        .service(operations::restore)
        .service(operations::migrate)
        .service(operations::drain)
        .service(jobs::list_jobs)
        .service(jobs::get_job)
        .service(jobs::cancel_job)
        .service(backups::list_backups)
        .service(backups::get_backup)
        .service(backups::delete_backup)
        .service(backups::verify_backup)
        .service(records::read_records)
        .service(metrics::metrics)
        .service(metrics::prometheus)
        .service(metrics::health)
        .service(metrics::ready)
        .service(schedules::create_schedule)
        .service(schedules::list_schedules)
        .service(schedules::get_schedule)
        .service(schedules::delete_schedule)
        .service(openapi::openapi_json);
}
