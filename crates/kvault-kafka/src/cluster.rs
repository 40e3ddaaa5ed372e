//! [`KafkaCluster`]: one configured cluster and the operations kvault runs against it. This is
//! the surface the API layer and the CLI call; the work happens in `backup` and `restore`.

use std::sync::Arc;
use std::time::Duration;

use kvault_domain::backup::{BackupOutcome, BackupPlan};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestorePlan;
use kvault_domain::{BackupResult, ClusterId, DomainError, RestoreResult, ValidationError};

use crate::admin::Admin;
use crate::client::ClusterConfig;

/// How long `ping` waits for a metadata answer.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the connection check before an operation waits for a metadata answer (the
/// operation's own requests wait as long).
const CHECK_TIMEOUT: Duration = crate::admin::METADATA_TIMEOUT;

/// A cluster kvault can talk to. Cheap to create and to clone: clients are made per operation.
#[derive(Debug, Clone)]
pub struct KafkaCluster {
    id: ClusterId,
    config: ClusterConfig,
}

impl KafkaCluster {
    /// Checks the definition; does no network I/O.
    pub fn connect(id: ClusterId, config: &ClusterConfig) -> DomainResult<Self> {
        if config.bootstrap_servers.trim().is_empty() {
            return Err(ValidationError::new(
                "bootstrap_servers",
                "",
                format!("cluster {id} names no bootstrap servers"),
            )
            .into());
        }
        Ok(Self {
            id,
            config: config.clone(),
        })
    }

    pub fn id(&self) -> &ClusterId {
        &self.id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Metadata and admin helpers for this cluster (creates clients).
    pub fn admin(&self) -> DomainResult<Admin> {
        Admin::new(&self.config)
    }

    /// Succeeds when the cluster answers a metadata request within a few seconds; fails at
    /// once when it refuses kvault's credentials or the TLS handshake (see [`crate::security`]).
    pub async fn ping(&self) -> DomainResult<()> {
        self.check_within(PING_TIMEOUT).await
    }

    /// The connection check an operation starts with: a refused password or certificate ends
    /// it at once, naming the cause, instead of after the metadata timeout.
    pub async fn check_connection(&self) -> DomainResult<()> {
        self.check_within(CHECK_TIMEOUT).await
    }

    async fn check_within(&self, timeout: Duration) -> DomainResult<()> {
        crate::security::verify(&self.config, timeout)
            .await
            .map_err(|e| match e {
                DomainError::Kafka {
                    failure,
                    message,
                    source,
                } => DomainError::Kafka {
                    failure,
                    message: format!("cluster '{}': {message}", self.id),
                    source,
                },
                other => other,
            })
    }

    pub async fn topic_exists(&self, topic: &str) -> DomainResult<bool> {
        self.check_connection().await?;
        Ok(self.admin()?.topic(topic).await?.is_some())
    }

    pub async fn list_topics(&self) -> DomainResult<Vec<String>> {
        self.check_connection().await?;
        self.admin()?.list_topics().await
    }

    /// Backs up a consistent cut of the plan's topic into `store` (see the `backup` module).
    pub async fn backup(
        &self,
        plan: BackupPlan,
        store: Arc<dyn ArchiveStore>,
        control: OperationControl,
    ) -> DomainResult<BackupResult> {
        self.check_connection().await?;
        let written =
            crate::backup::run(self.id.as_str(), &self.config, plan, store, control, false).await?;
        match written {
            BackupOutcome::Written(result) => Ok(result),
            BackupOutcome::NothingNew(_) => Err(DomainError::internal(
                "a backup that may not skip an empty increment skipped one",
            )),
        }
    }

    /// [`Self::backup`], or nothing when an incremental backup finds no new record.
    pub async fn backup_unless_unchanged(
        &self,
        plan: BackupPlan,
        store: Arc<dyn ArchiveStore>,
        control: OperationControl,
    ) -> DomainResult<BackupOutcome> {
        self.check_connection().await?;
        crate::backup::run(self.id.as_str(), &self.config, plan, store, control, true).await
    }

    /// Restores a backup from `store` into the plan's target topic (see the `restore` module).
    pub async fn restore(
        &self,
        plan: RestorePlan,
        store: Arc<dyn ArchiveStore>,
        control: OperationControl,
    ) -> DomainResult<RestoreResult> {
        self.check_connection().await?;
        crate::restore::run(self.id.as_str(), &self.config, plan, store, control).await
    }
}
