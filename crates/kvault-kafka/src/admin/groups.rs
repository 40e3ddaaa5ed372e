//! Consumer groups as the admin sees them: which groups exist and who is in one, asked over
//! the admin's long-lived client (a fresh client first waits for cluster metadata, which costs
//! about a second per call).

use kvault_domain::error::DomainResult;
use rdkafka::consumer::Consumer;

use super::{blocking, Admin, METADATA_TIMEOUT};
use crate::client::kafka_error;

impl Admin {
    /// Every consumer group the cluster knows (groups of other protocols, e.g. Connect
    /// workers, excluded), sorted.
    pub async fn list_groups(&self) -> DomainResult<Vec<String>> {
        let reader = self.reader.clone();
        blocking(move || {
            let list = reader
                .fetch_group_list(None, METADATA_TIMEOUT)
                .map_err(|e| kafka_error("list consumer groups", e))?;
            let mut groups: Vec<String> = list
                .groups()
                .iter()
                .filter(|g| matches!(g.protocol_type(), "" | "consumer"))
                .map(|g| g.name().to_owned())
                .collect();
            groups.sort_unstable();
            groups.dedup();
            Ok(groups)
        })
        .await
    }

    /// How many members `group` has right now (0 for an empty or unknown group).
    pub async fn active_members(&self, group: &str) -> DomainResult<usize> {
        let reader = self.reader.clone();
        let group = group.to_owned();
        blocking(move || {
            let list = reader
                .fetch_group_list(Some(&group), METADATA_TIMEOUT)
                .map_err(|e| kafka_error(format!("describe group {group}"), e))?;
            Ok(list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .map(|g| g.members().len())
                .sum())
        })
        .await
    }
}
