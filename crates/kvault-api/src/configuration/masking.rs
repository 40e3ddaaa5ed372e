//! The `masking:` section: the key of masked restores' `hash` action. Hashes are
//! HMAC-SHA-256 under this key, so equal inputs hash alike across topics and runs (joins
//! still work in the test environment) while nobody without the key can test a guessed email
//! against a hash. Replicas must share the key for a taken-over restore to hash alike.
//! It also names the stored key lists a restore's `exclude_keys` may refer to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// Fewest key bytes accepted (HMAC-SHA-256's security needs at least its output's 32; 16
/// is the floor below which a key is refused as a mistake).
pub const MIN_HMAC_KEY_BYTES: usize = 16;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskingSettings {
    /// The HMAC key (`KVAULT__MASKING__HMAC_KEY`); unset, restores that hash are refused.
    pub hmac_key: Option<Secret>,
    /// Key lists by name (`exclude_keys: [{"list": NAME}]`): files of one key per line, a
    /// line `base64:...` for a key that is not text; read when each restore starts.
    pub key_lists: BTreeMap<String, PathBuf>,
}

impl MaskingSettings {
    /// The key's bytes, when set; a key shorter than [`MIN_HMAC_KEY_BYTES`] is an error.
    pub fn hmac_key(&self) -> Result<Option<&[u8]>, String> {
        match &self.hmac_key {
            Some(key) if key.expose().len() < MIN_HMAC_KEY_BYTES => Err(format!(
                "masking.hmac_key must be at least {MIN_HMAC_KEY_BYTES} bytes"
            )),
            Some(key) => Ok(Some(key.expose().as_bytes())),
            None => Ok(None),
        }
    }
}
