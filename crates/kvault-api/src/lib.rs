//! kvault's HTTP API: the documented endpoints over actix-web, JWT roles, limits, and job state
//! in a SQL database.
//!
//! What the `kvault` binary uses:
//! - [`configuration::Settings::load`]: defaults, `--config` file, `KVAULT__*` env vars.
//! - [`startup::Application`]: `build(settings, adapters)`, `port()`, `run_until_stopped()`;
//!   [`startup::Adapters`] is the engine and archive store the binary wires in.
//! - [`auth::mint_token`]: tokens for `kvault token`.
//! - [`jobs::JobStore`]: the job table, for CLI listings.

pub mod configuration;
pub mod engine;
pub mod error;
pub mod http;
pub mod startup;
pub mod telemetry;

// The paths callers outside the crate have always used.
pub use engine::{jobs, retention};
pub use http::{auth, routes, state};

pub use configuration::{ConfigError, Settings};
pub use http::state::AppState;
pub use startup::Adapters;
pub use startup::{Application, StartupError};
