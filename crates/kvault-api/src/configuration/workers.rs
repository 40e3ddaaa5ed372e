//! The `workers:` section: how this replica holds its jobs when several replicas share one
//! database (leases, heartbeats, takeover, shutdown). A single node needs none of it changed.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// This replica's name in the job table (`owner`). Default: host name, process id and a
    /// random suffix, unique per start.
    #[serde(default)]
    pub replica_id: Option<String>,
    /// A job whose lease was not renewed for this long is taken over by another replica.
    #[serde(default = "default_lease")]
    pub lease_ttl_secs: u64,
    /// How often leases are renewed (and progress written) and expired ones looked for.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Jobs this replica takes over at most at once (its own admissions follow the limits).
    #[serde(default = "default_max_jobs")]
    pub max_jobs: usize,
    /// On SIGTERM: how long running jobs may take to finish before they are handed over.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Topics a backup set backs up at once (each topic still its own consistent cut).
    #[serde(default = "default_set_parallelism")]
    pub set_parallelism: usize,
    /// Topics a restore of a set restores at once (each its own restore). Higher than a
    /// backup's by default: a small topic's restore is mostly round trips (its creation,
    /// metadata, the journal's start record), and a producer holds less than a backup's
    /// consumers.
    #[serde(default = "default_set_restore_parallelism")]
    pub set_restore_parallelism: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            replica_id: None,
            lease_ttl_secs: default_lease(),
            heartbeat_secs: default_heartbeat(),
            max_jobs: default_max_jobs(),
            shutdown_grace_secs: default_grace(),
            set_parallelism: default_set_parallelism(),
            set_restore_parallelism: default_set_restore_parallelism(),
        }
    }
}

fn default_lease() -> u64 {
    15
}
fn default_heartbeat() -> u64 {
    5
}
fn default_max_jobs() -> usize {
    16
}
fn default_grace() -> u64 {
    20
}
fn default_set_restore_parallelism() -> usize {
    kvault_domain::side_by_side::DEFAULT_SET_RESTORE_PARALLELISM
}
fn default_set_parallelism() -> usize {
    kvault_domain::side_by_side::DEFAULT_SET_PARALLELISM
}

impl WorkerSettings {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The configured replica id, or a fresh one.
    pub fn replica_id(&self) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "kvault".into());
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            format!("{host}-{}-{}", std::process::id(), &suffix[..6])
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_secs == 0 || self.lease_ttl_secs < 2 * self.heartbeat_secs {
            return Err(ConfigError::invalid(
                "workers.lease_ttl_secs",
                "must be at least twice workers.heartbeat_secs (which must be at least 1), so \
                 one missed heartbeat does not lose a lease",
            ));
        }
        if self.max_jobs == 0 {
            return Err(ConfigError::invalid(
                "workers.max_jobs",
                "must be at least 1",
            ));
        }
        if !(1..=64).contains(&self.set_parallelism) {
            return Err(ConfigError::invalid(
                "workers.set_parallelism",
                "must be 1 to 64",
            ));
        }
        if !(1..=64).contains(&self.set_restore_parallelism) {
            return Err(ConfigError::invalid(
                "workers.set_restore_parallelism",
                "must be 1 to 64",
            ));
        }
        Ok(())
    }
}
