//! The composition root: the one place that picks implementations. It turns the settings into
//! the archive store (`kvault-storage`) and the operations engine (`kvault-kafka`) that the API
//! and the CLI then use only through the domain's traits.

use std::sync::Arc;

use kvault_api::configuration::Settings;
use kvault_api::Adapters;
use kvault_domain::operations::Engine;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::{ClusterConfig, ClusterId};
use kvault_kafka::KafkaEngine;
use kvault_storage::LocalArchiveStore;

use crate::exit::CliError;

/// The archive store the settings name.
pub fn archive_store(settings: &Settings) -> Result<Arc<dyn ArchiveStore>, CliError> {
    let path = &settings.backup.base_path;
    let store = LocalArchiveStore::new(path).map_err(|e| {
        CliError::internal(format!(
            "cannot open backup directory {}: {e}",
            path.display()
        ))
    })?;
    Ok(Arc::new(store))
}

/// The engine over `clusters`, writing to and reading from `archives`.
pub fn engine(
    clusters: impl IntoIterator<Item = (ClusterId, ClusterConfig)>,
    archives: Arc<dyn ArchiveStore>,
) -> Result<Arc<dyn Engine>, CliError> {
    Ok(Arc::new(KafkaEngine::new(clusters, archives)?))
}

/// What `kvault serve` runs on: the engine over every configured cluster and the store.
pub fn adapters(settings: &Settings) -> Result<Adapters, CliError> {
    let archives = archive_store(settings)?;
    let clusters = settings
        .clusters
        .iter()
        .map(|(id, config)| Ok((ClusterId::parse(id)?, config.clone())))
        .collect::<Result<Vec<_>, CliError>>()?;
    Ok(Adapters {
        engine: engine(clusters, archives.clone())?,
        archives,
    })
}
