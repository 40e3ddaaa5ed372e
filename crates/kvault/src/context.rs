//! What every command needs from the configuration: the archive store and the operations
//! engine over the clusters it names.

use std::path::Path;
use std::sync::Arc;

use kvault_api::configuration::{Settings, StorageTarget};
use kvault_domain::operations::Engine;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::{ClusterConfig, ClusterId};
use kvault_kafka::KafkaCluster;

use crate::cli::AdHocCluster;
use crate::exit::{CliError, EXIT_NOT_FOUND, EXIT_STORAGE_REFUSED};
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

    pub fn archives(&self) -> Result<Arc<dyn ArchiveStore>, CliError> {
        crate::compose::archive_store(&self.settings)
    }

    /// The store for a command that only reads backups: a local backup directory that does
    /// not exist is an error saying where it looked, not an empty store created on the spot
    /// (which would look as if every backup were gone).
    pub fn existing_store(&self) -> Result<Arc<dyn ArchiveStore>, CliError> {
        if let StorageTarget::Local(path) = self.storage_target()? {
            if !path.is_dir() {
                let shown = std::path::absolute(&path).unwrap_or(path);
                return Err(CliError::new(
                    EXIT_STORAGE_REFUSED,
                    format!(
                        "no backup directory at {} (backup.base_path / storage.url; a relative \
                         path is taken from the current directory): run from the directory \
                         you backed up from, or pass --config",
                        shown.display()
                    ),
                ));
            }
        }
        self.archives()
    }

    /// Where the settings put the archives.
    fn storage_target(&self) -> Result<StorageTarget, CliError> {
        self.settings
            .storage
            .target(&self.settings.backup.base_path)
            .map_err(|e| CliError::usage(e.to_string()))
    }

    /// With archives in object storage, says once on stderr when the local backup directory
    /// holds backups too: they are not listed, and a user who just turned S3 on should know.
    pub fn warn_about_other_store(&self) {
        let Ok(StorageTarget::S3(url) | StorageTarget::Azure(url)) = self.storage_target() else {
            return;
        };
        let local = &self.settings.backup.base_path;
        let held = std::fs::read_dir(local)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().join("manifest.json").is_file())
                    .count()
            })
            .unwrap_or(0);
        if held > 0 {
            eprintln!(
                "note: listing {url}; {held} backup(s) in the local directory {} are not \
                 listed (storage.url points at object storage)",
                local.display()
            );
        }
    }

    /// A client for a cluster named in the `clusters:` section (for `sample-data`, `topics`
    /// and `groups`, which are not operations), once it answers (else one line saying why).
    pub async fn cluster(&self, id: &str) -> Result<KafkaCluster, CliError> {
        let (cluster_id, config) = self.cluster_config(id)?;
        let cluster = KafkaCluster::connect(cluster_id.clone(), &config)?;
        crate::reach::check(&cluster_id, &config, cluster.ping()).await?;
        Ok(cluster)
    }

    /// The operations engine over the named clusters (each must be configured), on `archives`,
    /// once every one of them answers (else one line naming the cluster, address and cause).
    pub async fn engine(
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
        let engine = crate::compose::engine(definitions.clone(), archives, &self.settings)?;
        for (cluster_id, config) in &definitions {
            crate::reach::check(cluster_id, config, engine.ping(cluster_id)).await?;
        }
        Ok(engine)
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
        config
            .normalize_property_names()
            .map_err(|e| CliError::invalid(format!("cluster '{id}': {e}")))?;
        Ok((cluster_id, config))
    }
}
