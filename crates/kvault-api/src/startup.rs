//! Builds the server from [`Settings`] and the [`Adapters`] the composition root chose: job
//! store (with restart recovery), auth, limits, metrics, the retention sweeper, the consumer-lag
//! monitor, and the actix-web app with its JSON error handling and request metrics. [`Application::build`] binds (port 0 works for tests) and
//! [`Application::run_until_stopped`] serves.

use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::ErrorHandlers;
use actix_web::{web, App, HttpServer};
use kvault_domain::operations::Engine;
use kvault_domain::ports::{ArchiveStore, ConsumerLag, RecordFilters};

use crate::configuration::Settings;
use crate::engine::jobs::{JobStore, Lease, StoreError};
use crate::engine::runner::{JobRunner, Limits};
use crate::engine::state::EngineState;
use crate::error::json_fallback;
use crate::http::address_limit::AddressLimiter;
use crate::http::auth::{AuthError, Authenticator};
use crate::http::extract::{path_error, query_error};
use crate::http::routes;
pub use crate::http::state::AppState;
use crate::telemetry::figures::{ArchiveTotalsCache, FiguresCache};
use crate::telemetry::lag::LagBoard;
use crate::telemetry::{Limit, Telemetry};

/// The adapters the API runs on: the operations engine, the archive store it writes to, the
/// record-filter compiler the records route uses, and the consumer-lag reader the lag monitor
/// uses. Built by the caller of [`crate::Application::build`].
#[derive(Clone)]
pub struct Adapters {
    pub engine: Arc<dyn Engine>,
    pub archives: Arc<dyn ArchiveStore>,
    pub filters: Arc<dyn RecordFilters>,
    pub lag: Arc<dyn ConsumerLag>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
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
    pub async fn build(
        settings: Settings,
        adapters: Adapters,
    ) -> Result<Application, StartupError> {
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
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();

        let clusters: Vec<String> = settings.clusters.keys().cloned().collect();
        let telemetry = Arc::new(Telemetry::new(&clusters));
        let core = Arc::new(EngineState {
            runner: Arc::new(JobRunner::new(
                store,
                Lease::new(settings.workers.replica_id(), settings.workers.lease_ttl()),
                tokio::runtime::Handle::current(),
                Arc::clone(&telemetry),
            )),
            limits: Limits::new(&settings),
            engine: adapters.engine,
            archives: adapters.archives,
            archive_totals: Arc::new(ArchiveTotalsCache::default()),
            figures: FiguresCache::default(),
            retention: Default::default(),
            telemetry: Arc::clone(&telemetry),
            settings: settings.clone(),
        });
        let state = web::Data::new(AppState {
            auth: Authenticator::new(&settings.auth, settings.limits.requests_per_minute)?
                .counting_refusals(telemetry.refusals(Limit::Subject)),
            anonymous: AddressLimiter::new(
                NonZeroU32::new(settings.limits.anonymous_requests_per_minute)
                    .unwrap_or(NonZeroU32::MIN),
                settings.server.trust_forwarded_for,
            )
            .counting_refusals(telemetry.refusals(Limit::Address)),
            filters: adapters.filters,
            lag: adapters.lag,
            lag_board: Arc::new(LagBoard::new(&settings.monitoring.groups)),
            browses: Arc::new(tokio::sync::Semaphore::new(
                settings.browse.max_concurrent.max(1),
            )),
            core,
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

    /// Serves until the server stops (Ctrl-C / SIGTERM), with the retention sweeper, the
    /// lease heartbeat and the backup scheduler alongside. On a signal it stops taking jobs over, lets requests and jobs
    /// finish for `workers.shutdown_grace_secs`, then hands what still runs to other replicas.
    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        let core = &self.state.core;
        let sweeper = tokio::spawn(crate::engine::retention::retention_loop(core.clone()));
        let idle = tokio::spawn(forget_idle_subjects(self.state.clone()));
        let leases = tokio::spawn(crate::engine::workers::lease_loop(core.clone()));
        let lag = tokio::spawn(crate::telemetry::lag::lag_loop(
            self.state.lag.clone(),
            self.state.settings.monitoring.clone(),
            self.state.lag_board.clone(),
        ));
        let schedules = tokio::spawn(crate::engine::scheduler::schedule_loop(core.clone()));
        let signalled = Arc::new(std::sync::OnceLock::new());
        let listener = tokio::spawn(stop_taking_over_on_signal(
            self.state.clone(),
            signalled.clone(),
        ));
        let result = self.server.await;
        let grace = self.state.settings.workers.shutdown_grace();
        let left = signalled.get().map_or(grace, |at: &std::time::Instant| {
            grace.saturating_sub(at.elapsed())
        });
        crate::engine::workers::hand_over(&self.state.core, left).await;
        for task in [sweeper, idle, leases, lag, schedules, listener] {
            task.abort();
        }
        result
    }
}

fn run(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, StartupError> {
    let shutdown_grace = state.settings.workers.shutdown_grace_secs;
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
            // The path only: query strings (record filters) may hold personal data.
            .wrap(actix_web::middleware::Logger::new("%m %U %s %Dms").log_target("kvault::http"))
            .wrap(actix_web::middleware::from_fn(crate::http::track::track))
            .configure(routes::configure)
            .default_service(web::to(routes::fallback::unknown_route))
    })
    .shutdown_timeout(shutdown_grace)
    // A client that closes its side has gone: drop its request (a record read stops) instead
    // of waiting for a response nobody reads.
    .h1_allow_half_closed(false)
    .listen(listener)
    .map_err(|source| StartupError::Bind { address, source })?
    .run();
    Ok(server)
}

/// On SIGTERM or Ctrl-C (which actix also answers by draining HTTP), stop taking jobs over.
async fn stop_taking_over_on_signal(
    state: web::Data<AppState>,
    signalled: Arc<std::sync::OnceLock<std::time::Instant>>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    let _ = signalled.set(std::time::Instant::now());
    tracing::info!("stopping: no more takeovers; running jobs get workers.shutdown_grace_secs");
    state.runner.hand_over();
}

async fn forget_idle_subjects(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.auth.forget_idle();
        state.anonymous.forget_idle();
    }
}
