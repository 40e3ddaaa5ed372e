//! The `encryption:` section: the key-encryption keys archives are encrypted under, by id, and
//! which one new archives use. Each key comes from the config itself (`key`, also settable as
//! `KVAULT__ENCRYPTION__KEYS__<ID>__KEY`), a file (`key_file`, the `_file` convention of
//! cluster secrets) or a named environment variable (`key_env`). The composition root reads
//! and parses them; this module only checks the shape. Keys are [`Secret`]s: never in `Debug`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// `encryption:`. Without `active_key` new archives are not encrypted; existing encrypted
/// archives are still read with whichever of `keys` wrapped them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EncryptionSettings {
    /// The id of the key new archives are encrypted under; one of `keys`.
    #[serde(default)]
    pub active_key: Option<String>,
    /// Keys by id (1 to 64 of `[a-z0-9._-]`): 32 bytes as 64 hex digits or base64. Lower
    /// case only: names set through the environment arrive lower-cased, so `K1` in a file
    /// and `KVAULT__ENCRYPTION__KEYS__K1__KEY` would otherwise be two different keys.
    #[serde(default)]
    pub keys: BTreeMap<String, KeySource>,
}

/// Where one key's text is: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeySource {
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub key_env: Option<String>,
}

impl EncryptionSettings {
    /// Each key has exactly one source; the active key is one of them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (id, source) in &self.keys {
            if id.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(ConfigError::invalid(
                    &format!("encryption.keys.{id}"),
                    "key ids are lower case (names set through the environment arrive \
                     lower-cased)",
                ));
            }
            let given = [
                source.key.is_some(),
                source.key_file.is_some(),
                source.key_env.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(ConfigError::invalid(
                    &format!("encryption.keys.{id}"),
                    "needs exactly one of key, key_file, key_env",
                ));
            }
        }
        match &self.active_key {
            Some(active) if !self.keys.contains_key(active) => Err(ConfigError::invalid(
                "encryption.active_key",
                format!("'{active}' is not one of encryption.keys"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_source_and_the_active_one_exists() {
        let source = |key: Option<&str>, env: Option<&str>| KeySource {
            key: key.map(Secret::new),
            key_file: None,
            key_env: env.map(str::to_owned),
        };
        let mut s = EncryptionSettings {
            active_key: Some("k1".into()),
            keys: [("k1".to_owned(), source(Some("x"), None))].into(),
        };
        assert!(s.validate().is_ok());
        assert!(!format!("{s:?}").contains("\"x\""));
        s.active_key = Some("k2".into());
        assert!(s.validate().unwrap_err().to_string().contains("k2"));
        s.active_key = None;
        s.keys.insert("k3".into(), source(Some("x"), Some("VAR")));
        assert!(s.validate().unwrap_err().to_string().contains("k3"));
        s.keys.remove("k3");
        s.keys.insert("K4".into(), source(Some("x"), None));
        assert!(s.validate().unwrap_err().to_string().contains("lower case"));
    }
}
