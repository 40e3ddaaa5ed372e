//! The middleware that counts every answered request into the process's HTTP metrics
//! ([`crate::telemetry::http::HttpMetrics`]): by method, route pattern and status, with its
//! latency.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::http::state::AppState;
use crate::telemetry::http::UNMATCHED;

/// The middleware (`middleware::from_fn(track)`), outermost so it sees the final status.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.telemetry.http.clone());
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        let (route, status) = match &res {
            Ok(r) => (r.request().match_pattern(), r.status()),
            Err(e) => (None, e.as_response_error().status_code()),
        };
        let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
        metrics.observe(&method, &route, status, started.elapsed());
    }
    res
}
