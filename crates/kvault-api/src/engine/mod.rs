//! The job engine: admission within the concurrency limits, the job table and its leases, the
//! runner that runs operations as jobs, starting backups, taking over the jobs of replicas that
//! stopped, the scheduler, retention and the background workers that keep leases alive.

pub(crate) mod backup_start;
pub mod jobs;
pub(crate) mod limits;
pub(crate) mod outcome;
pub mod retention;
pub mod runner;
pub(crate) mod scheduler;
pub mod state;
pub(crate) mod takeover;
pub(crate) mod workers;
