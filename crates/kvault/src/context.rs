//! What every command needs from the configuration: the archive store and the operations
//! engine over the clusters it names.

use std::path::Path;
use std::sync::Arc;

use kvault_api::configuration::Settings;
use kvault_domain::operations::Engine;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::{ClusterConfig, ClusterId};
use kvault_kafka::KafkaCluster;

use crate::cli::AdHocCluster;
use crate::exit::{CliError, EXIT_NOT_FOUND};
use crate::progress::Display;

pub struct Context {
    pub settings: Settings,
    ad_hoc: AdHocCluster,
    /// How long operations show their progress on stderr.
    pub progress: Display,
}

/// The name a `-b` cluster goes by when the command names none.
pub const AD_HOC_CLUSTER: &str = "adhoc";

impl Context {
    pub fn load(config: Option<&Path>) -> Result<Self, CliError> {
        let settings =
            Settings::load(config).map_err(|e| CliError::invalid(format!("configuration: {e}")))?;
        Ok(Self {
            settings,
            ad_hoc: AdHocCluster::default(),
            progress: Display::Lines,
        })
    }

    /// Sets how operations show their progress (`--quiet`, terminal or not).
    pub fn with_progress(mut self, progress: Display) -> Self {
        self.progress = progress;
        self
    }

    /// Adds the `-b` / `-X` cluster from the command line.
    pub fn with_ad_hoc(mut self, ad_hoc: AdHocCluster) -> Self {
        self.ad_hoc = ad_hoc;
        self
    }

    /// The cluster a command runs against: the one it names, else the `-b` cluster.
    pub fn cluster_name(&self, named: Option<String>, flag: &str) -> Result<String, CliError> {
        match named {
            Some(name) => Ok(name),
            None if self.ad_hoc.bootstrap_servers.is_some() => Ok(AD_HOC_CLUSTER.to_owned()),
            None => Err(CliError::invalid(format!(
                "name a cluster with {flag} (configured: {}) or give -b host:port",
                self.known_clusters()
            ))),
        }
    }

    fn known_clusters(&self) -> String {
        let known: Vec<&str> = self.settings.clusters.keys().map(String::as_str).collect();
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    }

    pub fn store(&self) -> Result<Arc<dyn ArchiveStore>, CliError> {
        crate::compose::archive_store(&self.settings)
    }

    /// A client for a cluster named in the `clusters:` section (for `sample-data`, which is
    /// not one of the operations).
    pub fn cluster(&self, id: &str) -> Result<KafkaCluster, CliError> {
        let (cluster_id, config) = self.cluster_config(id)?;
        Ok(KafkaCluster::connect(cluster_id, &config)?)
    }

    /// The operations engine over the named clusters (each must be configured), on `archives`.
    pub fn engine(
        &self,
        clusters: &[&str],
        archives: Arc<dyn ArchiveStore>,
    ) -> Result<Arc<dyn Engine>, CliError> {
        let mut definitions = Vec::with_capacity(clusters.len());
        for id in clusters {
            let (cluster_id, config) = self.cluster_config(id)?;
            if !definitions.iter().any(|(known, _)| known == &cluster_id) {
                definitions.push((cluster_id, config));
            }
        }
        crate::compose::engine(definitions, archives)
    }

    /// The definition of a cluster named in the `clusters:` section.
    fn cluster_config(&self, id: &str) -> Result<(ClusterId, ClusterConfig), CliError> {
        let cluster_id = ClusterId::parse(id)?;
        let mut config = match &self.ad_hoc.bootstrap_servers {
            Some(bootstrap) => ClusterConfig {
                bootstrap_servers: bootstrap.clone(),
                properties: Default::default(),
            },
            None => self.settings.clusters.get(id).cloned().ok_or_else(|| {
                CliError::new(
                    EXIT_NOT_FOUND,
                    format!(
                        "cluster '{id}' is not configured (known: {}); or give -b host:port",
                        self.known_clusters()
                    ),
                )
            })?,
        };
        config
            .properties
            .extend(self.ad_hoc.properties.iter().cloned());
        Ok((cluster_id, config))
    }
}
