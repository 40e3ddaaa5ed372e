//! [`KafkaCluster`]: one configured cluster: its connection check, topic lookups and admin
//! client. Operations run through [`crate::KafkaEngine`], which holds every cluster.

use std::time::Duration;

use kvault_domain::error::DomainResult;
use kvault_domain::{ClusterId, DomainError, ValidationError};

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
}
