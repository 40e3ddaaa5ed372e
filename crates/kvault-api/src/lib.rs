//! kvault's HTTP API: the documented endpoints over actix-web, JWT roles, limits, and job state
//! in a SQL database.
//!
//! What the `kvault` binary uses:
//! - [`configuration::Settings::load`]: defaults, `--config` file, `KVAULT__*` env vars.
//! - [`startup::Application`]: `build(settings, adapters)`, `port()`, `run_until_stopped()`;
//!   [`state::Adapters`] is the engine and archive store the binary wires in.
//! - [`auth::mint_token`]: tokens for `kvault token`.
//! - [`jobs::JobStore`]: the job table, for CLI listings.

pub mod address_limit;
pub mod auth;
mod backup_start;
pub mod configuration;
pub mod error;
pub mod extract;
pub mod figures;
pub mod jobs;
mod limits;
mod outcome;
pub mod rate_limit;
pub mod retention;
pub mod routes;
pub mod runner;
mod scheduler;
pub mod startup;
pub mod state;
mod takeover;
mod takeover_writers;
pub mod telemetry;
mod workers;

pub use configuration::{ConfigError, Settings};
pub use startup::{Application, StartupError};
pub use state::{Adapters, AppState};
