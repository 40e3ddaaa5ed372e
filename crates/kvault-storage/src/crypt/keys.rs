//! Key-encryption keys: the [`KeyProvider`] seam (what a KMS would implement) and the local
//! provider, which holds keys read from configuration and wraps data keys with AES-256-GCM.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::{random, DataKey, KEY_LEN, TAG_LEN};

/// Why a key-encryption key could not wrap or unwrap a data key. Messages name key ids only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key of this id is configured.
    #[error("key '{0}' is not configured")]
    Unknown(String),
    /// The key of this id does not open the wrapped data key.
    #[error("key '{0}' does not unwrap the data key (a different key under that id, or the manifest was altered)")]
    Rejected(String),
    /// The provider failed for another reason (a KMS unreachable, ...).
    #[error("key '{key_id}': {message}")]
    Failed { key_id: String, message: String },
}

/// Holds key-encryption keys by id and wraps and unwraps data keys with them. A KMS-backed
/// provider (AWS KMS, Vault transit) implements the same three methods; the key bytes never
/// leave it, and the wrapped form is opaque to the format (base64 in the manifest).
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The id of the key new archives are encrypted under; `None`: new archives are not
    /// encrypted (the keys still read archives they wrapped).
    fn active_key_id(&self) -> Option<&str>;
    /// Wraps `key` under key `key_id`, bound to `context` (the archive it belongs to).
    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// The data key `wrapped` under key `key_id` with the same `context`.
    fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey, KeyError>;
}

/// One key-encryption key's bytes. Redacted in `Debug`, wiped on drop.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// A key from its text form: 64 hex digits or standard base64 of 32 bytes (surrounding
    /// whitespace ignored, so a key file may end with a newline). The error never repeats the
    /// text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        let bytes = Zeroizing::new(decoded.ok_or_else(|| {
            "is neither 64 hex digits nor base64 (`openssl rand -base64 32` makes one)".to_owned()
        })?);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "decodes to {} bytes, a key is {KEY_LEN} bytes",
                bytes.len()
            ));
        }
        key.copy_from_slice(&bytes);
        Ok(Self(key))
    }

    fn aead(&self) -> LessSafeKey {
        // Only fails for a key of the wrong length, which the type rules out.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0[..]).expect("32-byte AES key"))
    }
}

/// Key-encryption keys held in memory, from configuration. The wrapped form of a data key is
/// `nonce (12) | AES-256-GCM(data key) (32) | tag (16)`, with the archive context as
/// associated data.
#[derive(Debug)]
pub struct LocalKeys {
    keys: BTreeMap<String, Kek>,
    active: Option<String>,
}

impl LocalKeys {
    /// Keys by id; `active`, when given, must be one of them.
    pub fn new(keys: BTreeMap<String, Kek>, active: Option<&str>) -> Result<Self, String> {
        if let Some(active) = active.filter(|a| !keys.contains_key(*a)) {
            return Err(format!("the active key '{active}' is not among the keys"));
        }
        if let Some(bad) = keys.keys().find(|id| !valid_key_id(id)) {
            return Err(format!("key id '{bad}' must be 1 to 64 of [A-Za-z0-9._-]"));
        }
        Ok(Self {
            keys,
            active: active.map(str::to_owned),
        })
    }

    /// The configured key ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn key(&self, id: &str) -> Result<&Kek, KeyError> {
        self.keys
            .get(id)
            .ok_or_else(|| KeyError::Unknown(id.to_owned()))
    }
}

/// Key ids go into manifests, error messages and logs: plain names only.
pub fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KeyProvider for LocalKeys {
    fn active_key_id(&self) -> Option<&str> {
        self.active.as_deref()
    }

    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let kek = self.key(key_id)?;
        let failed = |message: &str| KeyError::Failed {
            key_id: key_id.to_owned(),
            message: message.to_owned(),
        };
        let nonce: [u8; NONCE_LEN] = random().map_err(|()| failed("no random bytes"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + KEY_LEN + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.bytes());
        let tag = kek
            .aead()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| failed("wrapping failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey, KeyError> {
        let kek = self.key(key_id)?;
        let rejected = || KeyError::Rejected(key_id.to_owned());
        if wrapped.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return Err(rejected());
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&wrapped[..NONCE_LEN]).map_err(|_| rejected())?;
        let mut buf = Zeroizing::new(wrapped[NONCE_LEN..].to_vec());
        let plain = kek
            .aead()
            .open_in_place(nonce, Aad::from(context), &mut buf[..])
            .map_err(|_| rejected())?;
        DataKey::from_slice(plain).ok_or_else(rejected)
    }
}
