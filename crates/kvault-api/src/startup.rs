//! Builds the server from [`Settings`]: job store (with restart recovery), Kafka clusters,
//! archive store, auth, limits, the retention sweeper, and the actix-web app with its JSON
//! error handling. [`Application::build`] binds (port 0 works for tests) and
//! [`Application::run_until_stopped`] serves.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::ErrorHandlers;
use actix_web::{web, App, HttpRequest, HttpServer};
use chrono::{DateTime, Utc};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::{BackupId, ClusterId};
use kvault_kafka::KafkaCluster;
use kvault_storage::LocalArchiveStore;
use utoipa::OpenApi;

use crate::auth::{AuthError, Authenticator};
use crate::configuration::Settings;
use crate::error::{json_fallback, ApiError};
use crate::extract::{path_error, query_error};
use crate::jobs::{JobStore, StoreError};
use crate::routes;
use crate::routes::metrics::ArchiveTotalsCache;
use crate::runner::{JobRunner, Limits};

/// Shared by every request.
pub struct AppState {
    pub settings: Settings,
    pub auth: Authenticator,
    pub runner: Arc<JobRunner>,
    pub limits: Limits,
    pub clusters: BTreeMap<String, Arc<KafkaCluster>>,
    pub store: Arc<dyn ArchiveStore>,
    pub archive_totals: Arc<ArchiveTotalsCache>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cluster '{id}': {message}")]
    Cluster { id: String, message: String },
    #[error("archive store at {path}: {message}")]
    Archive { path: String, message: String },
    #[error(
        "refusing to listen on {host}: {reason}, so anyone who can reach the server could mint \
         admin tokens. Set KVAULT__AUTH__JWT_SECRET to a random secret of at least 32 bytes \
         (e.g. `openssl rand -hex 32`), or listen on 127.0.0.1"
    )]
    InsecureAuth { host: String, reason: &'static str },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        if let Some(reason) = settings.auth.insecure_for_public_address() {
            if !crate::configuration::is_loopback_host(&settings.server.host) {
                return Err(StartupError::InsecureAuth {
                    host: settings.server.host.clone(),
                    reason,
                });
            }
        }
        if settings.auth.uses_dev_secret() {
            tracing::warn!(
                "!!! auth.jwt_secret is the published development secret: anyone can mint tokens \
                 for this server. Set KVAULT__AUTH__JWT_SECRET before exposing it. !!!"
            );
        }
        let store = JobStore::connect(
            settings.database.url.expose(),
            settings.database.max_connections,
        )
        .await?;
        let reason = ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "Interrupted",
            "the server stopped while this job was running; it did not finish",
        );
        let interrupted = store
            .interrupt_running(
                &serde_json::json!({"status": 503, "body": reason.body()}),
                Utc::now(),
            )
            .await?;
        if interrupted > 0 {
            tracing::warn!(
                jobs = interrupted,
                "jobs left running by a previous server marked interrupted"
            );
        }

        let mut clusters = BTreeMap::new();
        for (id, config) in &settings.clusters {
            let cluster_id = ClusterId::parse(id).map_err(|e| StartupError::Cluster {
                id: id.clone(),
                message: e.to_string(),
            })?;
            let cluster =
                KafkaCluster::connect(cluster_id, config).map_err(|e| StartupError::Cluster {
                    id: id.clone(),
                    message: e.to_string(),
                })?;
            clusters.insert(id.clone(), Arc::new(cluster));
        }
        let archive = LocalArchiveStore::new(&settings.backup.base_path).map_err(|e| {
            StartupError::Archive {
                path: settings.backup.base_path.display().to_string(),
                message: e.to_string(),
            }
        })?;

        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();

        let state = web::Data::new(AppState {
            auth: Authenticator::new(&settings.auth, settings.limits.requests_per_minute)?,
            runner: Arc::new(JobRunner::new(store)),
            limits: Limits::new(&settings),
            clusters,
            store: Arc::new(archive),
            archive_totals: Arc::new(ArchiveTotalsCache::default()),
            settings,
        });
        let server = run(listener, state.clone())?;
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for tools and tests that act next to the HTTP API (e.g. a sweep).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server stops (Ctrl-C / SIGTERM), with the retention sweeper alongside.
    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        let sweeper = tokio::spawn(retention_loop(self.state.clone()));
        let idle = tokio::spawn(forget_idle_subjects(self.state.clone()));
        let result = self.server.await;
        sweeper.abort();
        idle.abort();
        result
    }
}

fn run(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, StartupError> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .wrap(ErrorHandlers::new().default_handler(json_fallback))
            .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("kvault::http"))
            .configure(routes::configure)
            .default_service(web::to(unknown_route))
    })
    .listen(listener)
    .map_err(|source| StartupError::Bind { address, source })?
    .run();
    Ok(server)
}

/// Every documented `(path template, METHOD)`, from the OpenAPI document.
fn route_table() -> &'static [(String, String)] {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let doc =
            serde_json::to_value(crate::routes::openapi::ApiDoc::openapi()).unwrap_or_default();
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
async fn unknown_route(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
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
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
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

/// Deletes backups older than `retention_days` (none when it is 0), skipping backups a running
/// job uses. Returns the ids deleted.
pub async fn sweep_retention(
    store: &dyn ArchiveStore,
    retention_days: u32,
    now: DateTime<Utc>,
    in_use: impl Fn(&str) -> bool,
) -> Result<Vec<String>, kvault_domain::DomainError> {
    if retention_days == 0 {
        return Ok(Vec::new());
    }
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    let mut deleted = Vec::new();
    for manifest in store.list().await? {
        if manifest.finished_at >= cutoff || in_use(&manifest.backup_id) {
            continue;
        }
        let id = BackupId::parse(&manifest.backup_id)?;
        store.delete(&id).await?;
        tracing::info!(backup_id = %id, finished_at = %manifest.finished_at, retention_days, "backup expired and deleted");
        deleted.push(manifest.backup_id);
    }
    Ok(deleted)
}

async fn retention_loop(state: web::Data<AppState>) {
    let every = Duration::from_secs(state.settings.backup.retention_sweep_interval_secs.max(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let days = state.settings.backup.retention_days;
        let (store, runner) = (state.store.clone(), state.runner.clone());
        match store.sweep_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "abandoned partial backups removed"),
            Err(e) => tracing::error!(error = %e, "sweep of abandoned partial backups failed"),
        }
        let swept = sweep_retention(store.as_ref(), days, Utc::now(), |id| {
            runner.uses_backup(id)
        })
        .await;
        match swept {
            Ok(deleted) => {
                if !deleted.is_empty() {
                    state.archive_totals.invalidate();
                }
            }
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}

async fn forget_idle_subjects(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.auth.forget_idle();
    }
}
