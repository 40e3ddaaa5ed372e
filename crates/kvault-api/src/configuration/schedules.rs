//! The `schedules:` section: the floor under every backup schedule's cadence, so one operator
//! cannot make the server run (and bill) a backup every second.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleSettings {
    /// The shortest interval a schedule may run at: a shorter `every`, or a cron expression
    /// matching more often, is refused with 400; a stored schedule that runs more often (made
    /// before the floor was raised) is run at most this often.
    #[serde(default = "default_min_interval")]
    pub min_interval_secs: u64,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            min_interval_secs: default_min_interval(),
        }
    }
}

impl ScheduleSettings {
    /// The floor, at least one second.
    pub fn min_interval(&self) -> Duration {
        Duration::from_secs(self.min_interval_secs.max(1))
    }
}

fn default_min_interval() -> u64 {
    60
}
