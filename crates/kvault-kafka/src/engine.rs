//! [`KafkaEngine`]: the domain's operation traits ([`kvault_domain::operations`]) implemented
//! over rdkafka for a set of configured clusters and one archive store. This is what the
//! composition root hands to the API and the CLI as an `Arc<dyn Engine>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use kvault_domain::backup::{BackupOutcome, BackupPlan};
use kvault_domain::dry_run::{MigrateDryRun, RestoreDryRun};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{
    BackupOperation, Clusters, DrainOperation, DrainPlan, MigrateOperation, MigrationPlan,
    RestoreOperation,
};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestorePlan;
use kvault_domain::restore_transform::{parse_key_list, HashKey};
use kvault_domain::{
    BackupResult, ClusterConfig, ClusterId, DomainError, DrainResult, MigrateResult, RestoreResult,
    ValidationError,
};

use crate::cluster::KafkaCluster;

/// Every configured cluster plus the archive store backups go to and restores read from.
pub struct KafkaEngine {
    clusters: BTreeMap<ClusterId, KafkaCluster>,
    archives: Arc<dyn ArchiveStore>,
    /// The HMAC key of masked restores' `hash` action (`masking.hmac_key`).
    hash_key: Option<HashKey>,
    /// The files of the stored key lists `exclude_keys` may name (`masking.key_lists`).
    key_lists: BTreeMap<String, PathBuf>,
}

impl KafkaEngine {
    /// Checks every definition (no network I/O).
    pub fn new(
        clusters: impl IntoIterator<Item = (ClusterId, ClusterConfig)>,
        archives: Arc<dyn ArchiveStore>,
    ) -> DomainResult<Self> {
        let clusters = clusters
            .into_iter()
            .map(|(id, config)| Ok((id.clone(), KafkaCluster::connect(id, &config)?)))
            .collect::<DomainResult<_>>()?;
        Ok(Self {
            clusters,
            archives,
            hash_key: None,
            key_lists: BTreeMap::new(),
        })
    }

    /// Hashes masked fields under `key` (without one, a restore that hashes is refused).
    pub fn with_hash_key(mut self, key: Option<HashKey>) -> Self {
        self.hash_key = key;
        self
    }

    /// Reads `exclude_keys: [{"list": NAME}]` from these files (one key per line; see
    /// [`parse_key_list`]).
    pub fn with_key_lists(mut self, lists: BTreeMap<String, PathBuf>) -> Self {
        self.key_lists = lists;
        self
    }

    /// The plan with what no request carries: the configured hash key, and the keys of the
    /// stored lists it names, read now so that a list that grew counts at once.
    fn keyed(&self, mut plan: RestorePlan) -> DomainResult<RestorePlan> {
        if let Some(t) = plan.transform.as_mut() {
            t.hash_key = self.hash_key.clone();
            for name in &t.exclude_lists {
                t.exclude_keys.extend(self.key_list(name)?);
            }
        }
        Ok(plan)
    }

    /// The keys of the stored list `name`.
    fn key_list(&self, name: &str) -> DomainResult<BTreeSet<Vec<u8>>> {
        let Some(path) = self.key_lists.get(name) else {
            return Err(ValidationError::new(
                "exclude_keys",
                name,
                format!("names the list '{name}', which is not one of masking.key_lists"),
            )
            .into());
        };
        let content = std::fs::read(path).map_err(|e| {
            DomainError::internal(format!(
                "key list '{name}' ({}) cannot be read: {e}",
                path.display()
            ))
        })?;
        parse_key_list(&content).map_err(|e| {
            DomainError::internal(format!("key list '{name}' ({}): {e}", path.display()))
        })
    }

    /// Backs up the plan's cut into the archive store (see the `backup` module); with
    /// `skip_unchanged`, an incremental backup that finds nothing new writes nothing.
    async fn run_backup(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
        skip_unchanged: bool,
    ) -> DomainResult<BackupOutcome> {
        let cluster = self.cluster(cluster)?;
        cluster.check_connection().await?;
        let (id, config, store) = (cluster.id(), cluster.config(), self.archives.clone());
        crate::backup::run(id, config, plan, store, control, skip_unchanged).await
    }

    /// The cluster `id`, `NotFound` when it is not configured.
    pub fn cluster(&self, id: &ClusterId) -> DomainResult<&KafkaCluster> {
        self.clusters.get(id).ok_or_else(|| {
            DomainError::not_found(kvault_domain::error::Missing::Cluster, id.as_str())
        })
    }
}

#[async_trait]
impl Clusters for KafkaEngine {
    fn knows(&self, id: &ClusterId) -> bool {
        self.clusters.contains_key(id)
    }

    fn ids(&self) -> Vec<ClusterId> {
        self.clusters.keys().cloned().collect()
    }

    async fn ping(&self, cluster: &ClusterId) -> DomainResult<()> {
        self.cluster(cluster)?.ping().await
    }

    async fn topic_exists(&self, cluster: &ClusterId, topic: &str) -> DomainResult<bool> {
        self.cluster(cluster)?.topic_exists(topic).await
    }

    async fn list_topics(&self, cluster: &ClusterId) -> DomainResult<Vec<String>> {
        self.cluster(cluster)?.list_topics().await
    }
}

#[async_trait]
impl BackupOperation for KafkaEngine {
    async fn backup(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupResult> {
        match self.run_backup(cluster, plan, control, false).await? {
            BackupOutcome::Written(result) => Ok(result),
            BackupOutcome::NothingNew(_) => Err(DomainError::internal(
                "a backup that may not skip an empty increment skipped one",
            )),
        }
    }

    async fn backup_unless_unchanged(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupOutcome> {
        self.run_backup(cluster, plan, control, true).await
    }
}

#[async_trait]
impl RestoreOperation for KafkaEngine {
    async fn restore(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: OperationControl,
    ) -> DomainResult<RestoreResult> {
        let cluster = self.cluster(cluster)?;
        let plan = self.keyed(plan)?;
        cluster.check_connection().await?;
        let (id, config, store) = (cluster.id(), cluster.config(), self.archives.clone());
        crate::restore::run(id, config, plan, store, control).await
    }

    async fn restore_dry_run(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: OperationControl,
    ) -> DomainResult<RestoreDryRun> {
        let cluster = self.cluster(cluster)?;
        let (id, config) = (cluster.id(), cluster.config());
        let plan = self.keyed(plan)?;
        crate::restore::dry_run(id, config, plan, self.archives.clone(), control).await
    }
}

#[async_trait]
impl MigrateOperation for KafkaEngine {
    async fn migrate(
        &self,
        plan: MigrationPlan,
        control: OperationControl,
    ) -> DomainResult<MigrateResult> {
        let source = self.cluster(&plan.source)?;
        let target = self.cluster(&plan.target)?;
        crate::migrate::migrate(source, target, plan.migration_id, plan.request, control).await
    }

    async fn migrate_dry_run(
        &self,
        plan: MigrationPlan,
        control: OperationControl,
    ) -> DomainResult<MigrateDryRun> {
        let source = self.cluster(&plan.source)?;
        let target = self.cluster(&plan.target)?;
        crate::migrate::dry_run(source, target, plan.request, control).await
    }
}

#[async_trait]
impl DrainOperation for KafkaEngine {
    async fn drain(
        &self,
        cluster: &ClusterId,
        plan: DrainPlan,
        control: OperationControl,
    ) -> DomainResult<DrainResult> {
        self.cluster(cluster)?.drain(plan.request, control).await
    }
}
