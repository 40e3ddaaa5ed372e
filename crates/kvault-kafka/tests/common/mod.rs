//! What the Kafka adapter's integration tests share: a cluster on the test broker, a local
//! archive store, the engine over both, and backup and restore calls with test-friendly
//! defaults.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;

use chrono::Utc;
use kvault_domain::backup::{BackupDefaults, BackupRequest};
use kvault_domain::job::OperationControl;
use kvault_domain::operations::{BackupOperation, RestoreOperation};
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore::RestoreRequest;
use kvault_domain::{BackupResult, ClusterId, CompressionType, DomainError, RestoreResult};
use kvault_kafka::{ClusterConfig, KafkaCluster, KafkaEngine};
use kvault_storage::Store;
use kvault_testkit::TestBroker;
use tempfile::TempDir;

pub fn cluster(broker: &TestBroker) -> KafkaCluster {
    KafkaCluster::connect(
        ClusterId::parse("test").unwrap(),
        &ClusterConfig::new(broker.bootstrap()),
    )
    .unwrap()
}

/// The engine the API runs operations through, over `kafka` alone and archiving into `store`.
pub fn engine(kafka: &KafkaCluster, store: &Arc<dyn ArchiveStore>) -> KafkaEngine {
    let cluster = (kafka.id().clone(), kafka.config().clone());
    KafkaEngine::new([cluster], store.clone()).unwrap()
}

pub fn store() -> (TempDir, Arc<dyn ArchiveStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path()).unwrap();
    (dir, Arc::new(store))
}

pub fn request(topic: &str, codec: CompressionType) -> BackupRequest {
    let mut req = BackupRequest::for_topic(topic);
    req.compression = Some(codec);
    req.rate_limit_per_second = Some(10_000_000);
    req
}

pub async fn backup(
    kafka: &KafkaCluster,
    store: &Arc<dyn ArchiveStore>,
    req: BackupRequest,
) -> Result<BackupResult, DomainError> {
    let plan = req.validate(BackupDefaults::default(), Utc::now())?;
    engine(kafka, store)
        .backup(kafka.id(), plan, OperationControl::new())
        .await
}

pub async fn restore(
    kafka: &KafkaCluster,
    store: &Arc<dyn ArchiveStore>,
    mut req: RestoreRequest,
) -> Result<RestoreResult, DomainError> {
    if req.rate_limit_per_second.is_none() {
        req.rate_limit_per_second = Some(10_000_000);
    }
    let plan = req.validate()?;
    engine(kafka, store)
        .restore(kafka.id(), plan, OperationControl::new())
        .await
}
