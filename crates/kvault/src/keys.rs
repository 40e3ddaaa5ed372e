//! The key-encryption keys of the `encryption` section, read from where each is kept (the
//! config, a file, an environment variable) and parsed into the storage crate's local key
//! provider. Errors name the key id and the source, never the key.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvault_api::configuration::{EncryptionSettings, KeySource};
use kvault_storage::crypt::{Kek, KeyProvider, LocalKeys};

use crate::exit::CliError;

/// The provider the settings describe; `None` when no keys are configured.
pub fn provider(settings: &EncryptionSettings) -> Result<Option<Arc<dyn KeyProvider>>, CliError> {
    if settings.keys.is_empty() {
        return Ok(None);
    }
    let mut keys = BTreeMap::new();
    for (id, source) in &settings.keys {
        let field = format!("encryption.keys.{id}");
        let text = read(source).map_err(|e| CliError::usage(format!("{field}: {e}")))?;
        let kek = Kek::parse(&text).map_err(|e| CliError::usage(format!("{field}: {e}")))?;
        keys.insert(id.clone(), kek);
    }
    let local = LocalKeys::new(keys, settings.active_key.as_deref())
        .map_err(|e| CliError::usage(format!("encryption: {e}")))?;
    Ok(Some(Arc::new(local)))
}

/// The key's text from its one source (`Settings::validate` checked there is exactly one).
fn read(source: &KeySource) -> Result<String, String> {
    if let Some(key) = &source.key {
        return Ok(key.expose().to_owned());
    }
    if let Some(path) = &source.key_file {
        return std::fs::read_to_string(path)
            .map_err(|e| format!("key_file {}: {e}", path.display()));
    }
    if let Some(var) = &source.key_env {
        return std::env::var(var)
            .map_err(|_| format!("key_env: environment variable {var} is not set"));
    }
    Err("needs one of key, key_file, key_env".into())
}
