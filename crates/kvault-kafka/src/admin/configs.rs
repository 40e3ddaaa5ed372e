//! Topic configs through the admin client: the ones a backup records, and the value in effect
//! for one key (a restore's retention check).

use std::collections::BTreeMap;

use kvault_domain::error::DomainResult;
use rdkafka::admin::{AdminOptions, ConfigEntry, ConfigSource, ResourceSpecifier};

use super::{Admin, METADATA_TIMEOUT};
use crate::client::kafka_error;

impl Admin {
    /// The topic's configs worth restoring: those set on the topic itself (plus
    /// `cleanup.policy`, which decides what the topic *is*). Defaults and broker-wide values
    /// are left out so a restore into another cluster inherits that cluster's defaults.
    pub async fn topic_configs(&self, topic: &str) -> DomainResult<BTreeMap<String, String>> {
        let mut configs = BTreeMap::new();
        for entry in self.describe_configs(topic).await? {
            let Some(value) = entry.value else { continue };
            if entry.is_sensitive {
                continue;
            }
            let set_on_topic = match entry.source {
                ConfigSource::DynamicTopic => true,
                ConfigSource::Unknown => !entry.is_default,
                _ => false,
            };
            if set_on_topic || entry.name == "cleanup.policy" {
                configs.insert(entry.name, value);
            }
        }
        Ok(configs)
    }

    /// The value of config `name` in effect on the topic, wherever it is set (topic, broker
    /// or default).
    pub async fn effective_config(&self, topic: &str, name: &str) -> DomainResult<Option<String>> {
        let entries = self.describe_configs(topic).await?;
        Ok(entries
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value))
    }

    async fn describe_configs(&self, topic: &str) -> DomainResult<Vec<ConfigEntry>> {
        let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
        let results = self
            .admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
            .await
            .map_err(|e| kafka_error(format!("describe configs of {topic}"), e))?;
        let mut entries = Vec::new();
        for result in results {
            let resource = result.map_err(|code| {
                crate::error::code_error(format_args!("describe configs of {topic}"), code)
            })?;
            entries.extend(resource.entries);
        }
        Ok(entries)
    }
}
