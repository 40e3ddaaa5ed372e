//! The `monitoring:` section: which consumer groups' lag `/metrics` exports, and how often it
//! is read.

use std::collections::BTreeMap;
use std::time::Duration;

use kvault_domain::ClusterConfig;
use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
pub struct MonitoringSettings {
    /// How often the lag of every listed group is read.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// The consumer groups whose lag is exported.
    #[serde(default)]
    pub groups: Vec<MonitoredGroup>,
}

/// One consumer group to watch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MonitoredGroup {
    /// A configured cluster id.
    pub cluster: String,
    pub group: String,
    /// Topics to report; empty: every topic the group has committed offsets on.
    #[serde(default)]
    pub topics: Vec<String>,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        Self {
            interval_secs: default_interval(),
            groups: Vec::new(),
        }
    }
}

fn default_interval() -> u64 {
    30
}

impl MonitoringSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub(super) fn validate(
        &self,
        clusters: &BTreeMap<String, ClusterConfig>,
    ) -> Result<(), ConfigError> {
        if self.interval_secs == 0 {
            return Err(ConfigError::invalid(
                "monitoring.interval_secs",
                "must be at least 1",
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !clusters.contains_key(&g.cluster) {
                return Err(ConfigError::invalid(
                    &format!("monitoring.groups[{i}].cluster"),
                    format!("cluster '{}' is not configured", g.cluster),
                ));
            }
            if g.group.trim().is_empty() {
                return Err(ConfigError::invalid(
                    &format!("monitoring.groups[{i}].group"),
                    "must name a consumer group",
                ));
            }
            if self.groups[..i]
                .iter()
                .any(|o| o.cluster == g.cluster && o.group == g.group)
            {
                return Err(ConfigError::invalid(
                    &format!("monitoring.groups[{i}]"),
                    format!("group '{}' on '{}' is listed twice", g.group, g.cluster),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(cluster: &str, group: &str) -> MonitoredGroup {
        MonitoredGroup {
            cluster: cluster.into(),
            group: group.into(),
            topics: vec![],
        }
    }

    #[test]
    fn groups_must_name_a_configured_cluster_once() {
        let mut clusters = BTreeMap::new();
        clusters.insert("local".to_owned(), ClusterConfig::new("k:9092"));
        let mut m = MonitoringSettings::default();
        assert_eq!(m.interval(), Duration::from_secs(30));
        m.groups = vec![group("local", "orders")];
        m.validate(&clusters).unwrap();
        m.groups.push(group("elsewhere", "orders"));
        assert!(m.validate(&clusters).is_err());
        m.groups = vec![group("local", "orders"), group("local", "orders")];
        assert!(m.validate(&clusters).is_err());
        m.groups = vec![group("local", " ")];
        assert!(m.validate(&clusters).is_err());
        m.groups.clear();
        m.interval_secs = 0;
        assert!(m.validate(&clusters).is_err());
    }
}
