//! The composition root: the one place that picks implementations. It turns the settings into
//! the archive store (`kvault-storage`) and the operations engine (`kvault-kafka`) that the API
//! and the CLI then use only through the domain's traits.

use std::sync::Arc;

use kvault_api::configuration::Settings;
use kvault_api::Adapters;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::ClusterId;
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

/// The engine over every configured cluster, writing to and reading from `archives`.
pub fn adapters(settings: &Settings) -> Result<Adapters, CliError> {
    let archives = archive_store(settings)?;
    let clusters = settings
        .clusters
        .iter()
        .map(|(id, config)| Ok((ClusterId::parse(id)?, config.clone())))
        .collect::<Result<Vec<_>, CliError>>()?;
    let engine = KafkaEngine::new(clusters, archives.clone())?;
    Ok(Adapters {
        engine: Arc::new(engine),
        archives,
    })
}
