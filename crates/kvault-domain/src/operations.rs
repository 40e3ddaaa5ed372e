//! The four operations kvault runs, as traits: the Kafka adapter implements them, the API and
//! the CLI call them through `Arc<dyn Engine>`, and tests swap in an in-memory engine.
//!
//! Every entry point looks alike: a validated plan in (with the cluster it runs against), an
//! [`OperationControl`] for live progress and cancellation, a documented result out.

use async_trait::async_trait;

use crate::backup::{BackupOutcome, BackupPlan, BackupResult};
use crate::drain::{DrainRequest, DrainResult};
use crate::dry_run::{MigrateDryRun, RestoreDryRun};
use crate::error::{DomainResult, ValidationError};
use crate::ids::ClusterId;
use crate::job::OperationControl;
use crate::migrate::{MigrateRequest, MigrateResult};
use crate::restore::{RestorePlan, RestoreResult};

/// A validated migration: both clusters parsed, an id chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationPlan {
    pub migration_id: String,
    pub source: ClusterId,
    pub target: ClusterId,
    pub request: MigrateRequest,
}

impl MigrationPlan {
    /// A new unique migration id: `migration-{unix millis}-{random}`.
    pub fn generate_id(now: chrono::DateTime<chrono::Utc>) -> String {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("migration-{}-{}", now.timestamp_millis(), &suffix[..8])
    }

    /// Validates `request` once; the engine trusts the plan.
    pub fn new(request: MigrateRequest, migration_id: String) -> Result<Self, ValidationError> {
        let (source, target) = request.validate()?;
        Ok(Self {
            migration_id,
            source,
            target,
            request,
        })
    }
}

/// A validated drain request.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainPlan {
    pub request: DrainRequest,
}

impl DrainPlan {
    pub fn new(request: DrainRequest) -> Result<Self, ValidationError> {
        request.validate()?;
        Ok(Self { request })
    }
}

/// The clusters an engine knows, and the cheap questions asked before a job starts.
#[async_trait]
pub trait Clusters: Send + Sync {
    /// Whether `id` is configured.
    fn knows(&self, id: &ClusterId) -> bool;
    /// Every configured cluster id, sorted.
    fn ids(&self) -> Vec<ClusterId>;
    /// Succeeds when the cluster answers within a few seconds.
    async fn ping(&self, cluster: &ClusterId) -> DomainResult<()>;
    async fn topic_exists(&self, cluster: &ClusterId, topic: &str) -> DomainResult<bool>;
    /// Every topic on the cluster, internal ones included, sorted.
    async fn list_topics(&self, cluster: &ClusterId) -> DomainResult<Vec<String>>;
}

/// Backs up a consistent cut of a topic into the archive store.
#[async_trait]
pub trait BackupOperation: Send + Sync {
    async fn backup(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupResult>;

    /// [`Self::backup`], except that an incremental backup finding no record since its
    /// parent (see `backup_planning::nothing_new`) writes no archive and reads no group
    /// offsets: it returns [`BackupOutcome::NothingNew`] once the watermarks are read. What a
    /// schedule's runs use.
    async fn backup_unless_unchanged(
        &self,
        cluster: &ClusterId,
        plan: BackupPlan,
        control: OperationControl,
    ) -> DomainResult<BackupOutcome>;
}

/// Restores a backup from the archive store into a topic.
#[async_trait]
pub trait RestoreOperation: Send + Sync {
    async fn restore(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: OperationControl,
    ) -> DomainResult<RestoreResult>;

    /// What [`RestoreOperation::restore`] would do with `plan`: the same checks (archive
    /// checksums when `validate_checksum`, the target topic, `if_exists`, `preserve_offsets`,
    /// the groups) and planning, stopping before anything is created, produced or committed.
    async fn restore_dry_run(
        &self,
        cluster: &ClusterId,
        plan: RestorePlan,
        control: OperationControl,
    ) -> DomainResult<RestoreDryRun>;
}

/// Copies a topic to another topic or cluster, with optional transformations.
#[async_trait]
pub trait MigrateOperation: Send + Sync {
    async fn migrate(
        &self,
        plan: MigrationPlan,
        control: OperationControl,
    ) -> DomainResult<MigrateResult>;

    /// What [`MigrateOperation::migrate`] would do with `plan`: the same validation (the
    /// transformation compiled, both topics checked, `if_exists`) and planning, stopping
    /// before anything is created, produced or committed.
    async fn migrate_dry_run(
        &self,
        plan: MigrationPlan,
        control: OperationControl,
    ) -> DomainResult<MigrateDryRun>;
}

/// Watches a consumer group until it is drained or the timeout passes.
#[async_trait]
pub trait DrainOperation: Send + Sync {
    async fn drain(
        &self,
        cluster: &ClusterId,
        plan: DrainPlan,
        control: OperationControl,
    ) -> DomainResult<DrainResult>;
}

/// Everything the API and CLI need from the Kafka side, as one object.
pub trait Engine:
    Clusters + BackupOperation + RestoreOperation + MigrateOperation + DrainOperation
{
}

impl<T> Engine for T where
    T: Clusters + BackupOperation + RestoreOperation + MigrateOperation + DrainOperation
{
}
