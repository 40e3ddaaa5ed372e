//! HTTP request metrics: every answered request counted by method, route pattern
//! (`/api/kafka/jobs/{job_id}`, never the raw path, so the series stay few) and status, and
//! its latency observed (the middleware that feeds them is `crate::http::track`).

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Request latencies, seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl HttpMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "kvault_http_requests_total",
                "HTTP requests answered, by method, route pattern and status.",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kvault_http_request_duration_seconds",
                "Time to answer an HTTP request (until the response head), by method and route pattern.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric definition");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Self { requests, latency }
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &Method, route: &str, status: StatusCode, took: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }
}

/// Standard methods by name; anything else (a client may send any token) as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
