//! The composition root: the one place that picks implementations. It turns the settings into
//! the archive store (`kvault-storage`) and the operations engine (`kvault-kafka`) that the API
//! and the CLI then use only through the domain's traits.

use std::sync::Arc;

use std::time::Duration;

use kvault_api::configuration::{ObjectLockMode, S3Settings, Settings, StorageTarget};
use kvault_api::Adapters;
use kvault_domain::operations::Engine;
use kvault_domain::ports::ArchiveStore;
use kvault_domain::restore_transform::HashKey;
use kvault_domain::{ClusterConfig, ClusterId};
use kvault_kafka::KafkaEngine;
use kvault_storage::backend::object::{LockMode, ObjectBackend, ObjectConfig, ObjectLock};
use kvault_storage::{Store, StoreOptions};

use crate::exit::{CliError, EXIT_STORAGE_REFUSED};

/// The archive store the settings name: a local directory, an S3 bucket or an Azure container.
pub fn archive_store(settings: &Settings) -> Result<Arc<dyn ArchiveStore>, CliError> {
    Ok(Arc::new(store(settings)?))
}

/// [`archive_store`] as the concrete store, for the commands that change key records
/// (`kvault keys`), which are not part of the domain's port.
pub fn store(settings: &Settings) -> Result<Store, CliError> {
    let target = settings
        .storage
        .target(&settings.backup.base_path)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let options = StoreOptions {
        segment_size: settings
            .storage
            .segment_size()
            .map_err(|e| CliError::usage(e.to_string()))?,
        ..StoreOptions::default()
    };
    let store = match target {
        StorageTarget::Local(path) => Store::local_with_options(&path, options).map_err(|e| {
            CliError::internal(format!(
                "cannot open backup directory {}: {e}",
                path.display()
            ))
        })?,
        StorageTarget::S3(url) => {
            let s3 = &settings.storage.s3;
            refuse_plain_http("storage.s3", s3.endpoint.as_deref(), s3.allow_http)?;
            object_store(object_config(url, s3), options)?
        }
        StorageTarget::Azure(url) => {
            let azure = &settings.storage.azure;
            refuse_plain_http("storage.azure", azure.endpoint.as_deref(), azure.allow_http)?;
            let config = ObjectConfig {
                endpoint: azure.endpoint.clone(),
                allow_http: azure.allow_http,
                region: None,
                access_key_id: None,
                secret_access_key: None,
                azure_account: azure.account.clone(),
                azure_access_key: azure.access_key.as_ref().map(|s| s.expose().to_owned()),
                ..object_config(url, &settings.storage.s3)
            };
            object_store(config, options)?
        }
        other => return Err(CliError::usage(format!("unsupported storage {other:?}"))),
    };
    let store = match crate::keys::provider(&settings.encryption)? {
        Some(keys) => store.with_keys(keys),
        None => store,
    };
    tracing::info!(
        location = %store.location(),
        encrypts_under = store.active_key_id().unwrap_or("-"),
        "archive store"
    );
    Ok(store)
}

/// The archive store over the object storage `config` names.
fn object_store(config: ObjectConfig, options: StoreOptions) -> Result<Store, CliError> {
    let backend =
        ObjectBackend::connect(&config).map_err(|e| CliError::usage(format!("storage: {e}")))?;
    Store::on(Arc::new(backend), options).map_err(|e| CliError::internal(format!("storage: {e}")))
}

/// An `http://` endpoint needs `allow_http`: said in as many words (the object store's own
/// error is "builder error"), as a setting to fix (exit 8). `section` is `storage.s3` or
/// `storage.azure`.
fn refuse_plain_http(
    section: &str,
    endpoint: Option<&str>,
    allow_http: bool,
) -> Result<(), CliError> {
    match endpoint {
        Some(endpoint) if endpoint.starts_with("http://") && !allow_http => {
            let env = section.to_uppercase().replace('.', "__");
            Err(CliError::new(
                EXIT_STORAGE_REFUSED,
                format!(
                    "{section}.endpoint {endpoint} is plain HTTP but {section}.allow_http is \
                     false: set {section}.allow_http: true (KVAULT__{env}__ALLOW_HTTP=true) or \
                     use an https:// endpoint"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The storage crate's settings for `url` from the `storage.s3` section.
fn object_config(url: String, s3: &S3Settings) -> ObjectConfig {
    ObjectConfig {
        url,
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        allow_http: s3.allow_http,
        exclusive_bucket: s3.exclusive_bucket,
        access_key_id: s3.access_key_id.as_ref().map(|s| s.expose().to_owned()),
        secret_access_key: s3.secret_access_key.as_ref().map(|s| s.expose().to_owned()),
        azure_account: None,
        azure_access_key: None,
        part_size: s3.part_size_mib << 20,
        read_window: s3.read_window_mib << 20,
        abandoned_after: Duration::from_secs(s3.abandoned_after_secs),
        max_retries: s3.max_retries,
        retry_timeout: Duration::from_secs(s3.retry_timeout_secs),
        connect_timeout: Duration::from_secs(s3.connect_timeout_secs),
        request_timeout: Duration::from_secs(s3.request_timeout_secs),
        object_lock: s3.object_lock.map(|lock| ObjectLock {
            mode: match lock.mode {
                ObjectLockMode::Governance => LockMode::Governance,
                ObjectLockMode::Compliance => LockMode::Compliance,
            },
            retain: Duration::from_secs(u64::from(lock.retain_days) * 86_400),
        }),
    }
}

/// The engine over `clusters`, writing to and reading from `archives`, hashing masked fields
/// under the configured key.
pub fn engine(
    clusters: impl IntoIterator<Item = (ClusterId, ClusterConfig)>,
    archives: Arc<dyn ArchiveStore>,
    settings: &Settings,
) -> Result<Arc<dyn Engine>, CliError> {
    let engine = KafkaEngine::new(clusters, archives)?
        .with_hash_key(hash_key(settings)?)
        .with_key_lists(settings.masking.key_lists.clone());
    Ok(Arc::new(engine))
}

/// `masking.hmac_key`, checked.
fn hash_key(settings: &Settings) -> Result<Option<HashKey>, CliError> {
    let key = settings.masking.hmac_key().map_err(CliError::usage)?;
    Ok(key.map(HashKey::new))
}

/// What `kvault serve` runs on: the engine over every configured cluster and the store; the
/// same engine reads consumer lag.
pub fn adapters(settings: &Settings) -> Result<Adapters, CliError> {
    let archives = archive_store(settings)?;
    let clusters = settings
        .clusters
        .iter()
        .map(|(id, config)| Ok((ClusterId::parse(id)?, config.clone())))
        .collect::<Result<Vec<_>, CliError>>()?;
    let kafka = Arc::new(
        KafkaEngine::new(clusters, archives.clone())?
            .with_hash_key(hash_key(settings)?)
            .with_key_lists(settings.masking.key_lists.clone()),
    );
    Ok(Adapters {
        engine: kafka.clone(),
        archives,
        filters: Arc::new(kvault_kafka::transform::CelFilters),
        lag: kafka,
    })
}
