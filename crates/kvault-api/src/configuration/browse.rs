//! The `browse:` section: what one read of record contents (`GET .../records`) may cost.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BrowseSettings {
    /// Record reads running at once on this replica; more wait (then 429).
    pub max_concurrent: usize,
    /// How long one page may read and filter; then it ends (`truncated_by: time`), or fails
    /// with 422 when it found nothing yet.
    pub deadline_secs: u64,
    /// Encoded bytes one page holds at most (a page holds at least one record).
    pub page_max_bytes: usize,
    /// Values longer than this are cut unless `full_values=true`.
    pub value_preview_bytes: usize,
}

impl Default for BrowseSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            deadline_secs: 10,
            page_max_bytes: kvault_domain::browse::DEFAULT_PAGE_BYTES,
            value_preview_bytes: kvault_domain::browse::DEFAULT_VALUE_CAP,
        }
    }
}

impl BrowseSettings {
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs.max(1))
    }
}
