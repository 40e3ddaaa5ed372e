//! The store's side of encryption: a new archive's data key (made and wrapped), an existing
//! archive's (unwrapped), and the two changes to a committed manifest's key record: re-wrapping
//! the data key under another key-encryption key, and crypto-shredding (deleting it).

use base64::Engine as _;
use kvault_domain::manifest::ArchiveEncryption;

use super::*;
use crate::crypt::{wrap_context, DataKey, KeyError, SCHEME};

pub use kvault_domain::ports::Rewrapped;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Store {
    /// The key new archives are encrypted under, if this store encrypts.
    pub fn active_key_id(&self) -> Option<&str> {
        self.keys.as_deref().and_then(|k| k.active_key_id())
    }

    /// A fresh data key for new archive `uid`, wrapped under the active key, when this store
    /// encrypts; `None` otherwise.
    pub(super) fn new_archive_key(
        &self,
        id: &str,
        uid: &str,
    ) -> Result<Option<(ArchiveKey, ArchiveEncryption)>> {
        let Some((keys, key_id)) = self
            .keys
            .as_deref()
            .and_then(|k| Some((k, k.active_key_id()?.to_owned())))
        else {
            return Ok(None);
        };
        let unavailable = |reason: String| StorageError::KeyUnavailable {
            backup_id: id.to_owned(),
            key_id: key_id.clone(),
            reason,
        };
        let data_key = DataKey::generate()
            .map_err(|()| unavailable("no random bytes for a data key".into()))?;
        let wrapped = keys
            .wrap(&key_id, &data_key, &wrap_context(uid, &key_id))
            .map_err(|e| unavailable(e.to_string()))?;
        let record = ArchiveEncryption {
            scheme: SCHEME.to_owned(),
            key_id: key_id.clone(),
            wrapped_key: Some(b64().encode(wrapped)),
            shredded_at: None,
        };
        Ok(Some((ArchiveKey::new(&data_key, uid, &key_id), record)))
    }

    /// The data key of `manifest`'s archive, unwrapped; `None` for an unencrypted archive.
    /// `KeyUnavailable` (naming the archive and the key id) when it cannot be had.
    pub(crate) fn archive_key(&self, manifest: &Manifest) -> Result<Option<ArchiveKey>> {
        let Some(enc) = &manifest.encryption else {
            return Ok(None);
        };
        let data_key = self.unwrap_data_key(manifest, enc)?;
        let uid = manifest.archive_uid.as_deref().unwrap_or_default();
        Ok(Some(ArchiveKey::new(&data_key, uid, &enc.key_id)))
    }

    fn unwrap_data_key(&self, manifest: &Manifest, enc: &ArchiveEncryption) -> Result<DataKey> {
        let unavailable = |reason: String| StorageError::KeyUnavailable {
            backup_id: manifest.backup_id.clone(),
            key_id: enc.key_id.clone(),
            reason,
        };
        if enc.scheme != SCHEME {
            return Err(unavailable(format!("unknown scheme '{}'", enc.scheme)));
        }
        let Some(wrapped) = &enc.wrapped_key else {
            let when = enc
                .shredded_at
                .map_or_else(String::new, |t| format!(" at {}", t.to_rfc3339()));
            return Err(unavailable(format!(
                "its data key was destroyed (crypto-shredded{when}); it cannot be read"
            )));
        };
        let keys = self.keys.as_deref().ok_or_else(|| {
            unavailable("no encryption keys are configured (`encryption.keys`)".into())
        })?;
        let wrapped = b64()
            .decode(wrapped)
            .map_err(|_| unavailable("the wrapped data key is not base64".into()))?;
        let uid = manifest.archive_uid.as_deref().unwrap_or_default();
        keys.unwrap(&enc.key_id, &wrapped, &wrap_context(uid, &enc.key_id))
            .map_err(|e| match e {
                KeyError::Unknown(_) => unavailable("that key is not configured".into()),
                e => unavailable(e.to_string()),
            })
    }

    /// Re-wraps backup `id`'s data key under key `to` (which the provider must hold), without
    /// touching its segments. Needs the key that wraps it now.
    pub fn blocking_rewrap(&self, id: &BackupId, to: &str) -> DomainResult<Rewrapped> {
        self.rewrap_inner(id.as_str(), to)
            .map_err(|e| e.into_domain(id.as_str()))
    }

    fn rewrap_inner(&self, id: &str, to: &str) -> Result<Rewrapped> {
        let (old, mut manifest) = self.manifest_bytes(id)?;
        let Some(enc) = manifest.encryption.clone() else {
            return Err(not_encrypted(id));
        };
        let mut done = Rewrapped {
            backup_id: id.to_owned(),
            from_key_id: enc.key_id.clone(),
            to_key_id: to.to_owned(),
            changed: false,
        };
        let data_key = self.unwrap_data_key(&manifest, &enc)?;
        if enc.key_id == to {
            return Ok(done);
        }
        let keys = self.keys.as_deref().ok_or_else(|| not_encrypted(id))?;
        let uid = manifest.archive_uid.clone().unwrap_or_default();
        let wrapped = keys
            .wrap(to, &data_key, &wrap_context(&uid, to))
            .map_err(|e| StorageError::KeyUnavailable {
                backup_id: id.to_owned(),
                key_id: to.to_owned(),
                reason: e.to_string(),
            })?;
        manifest.encryption = Some(ArchiveEncryption {
            key_id: to.to_owned(),
            wrapped_key: Some(b64().encode(wrapped)),
            ..enc
        });
        self.replace_manifest(id, &old, &manifest)?;
        done.changed = true;
        Ok(done)
    }

    /// Crypto-shreds backup `id`: deletes its wrapped data key from the manifest, so no key
    /// can read its segments again (wherever copies of them survive). The manifest (and so
    /// the listing) stays, marked `shredded_at`; deleting the backup remains a separate step.
    pub fn blocking_shred(&self, id: &BackupId) -> DomainResult<Manifest> {
        self.shred_inner(id.as_str())
            .map_err(|e| e.into_domain(id.as_str()))
    }

    fn shred_inner(&self, id: &str) -> Result<Manifest> {
        let (old, mut manifest) = self.manifest_bytes(id)?;
        // Retention keeps the locked manifest version (and its wrapped key) whatever is
        // written over it: a shred could not keep its promise until the lock expires.
        if let Some(until) = manifest.immutable_until.filter(|u| *u > Utc::now()) {
            return Err(StorageError::ArchiveLocked {
                backup_id: id.to_owned(),
                until,
            });
        }
        let Some(enc) = manifest.encryption.as_mut() else {
            return Err(not_encrypted(id));
        };
        if enc.wrapped_key.is_none() {
            return Ok(manifest);
        }
        enc.wrapped_key = None;
        enc.shredded_at = Some(Utc::now());
        self.replace_manifest(id, &old, &manifest)?;
        Ok(manifest)
    }

    fn manifest_bytes(&self, id: &str) -> Result<(Vec<u8>, Manifest)> {
        let bytes = self
            .backend
            .read_manifest(id, MAX_MANIFEST_LEN)?
            .ok_or_else(|| StorageError::BackupNotFound(id.to_owned()))?;
        let manifest = self.parse_manifest(id, &bytes)?;
        Ok((bytes, manifest))
    }

    fn replace_manifest(&self, id: &str, old: &[u8], manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StorageError::BadManifest {
            file: format!("{id}/{MANIFEST_FILE}"),
            reason: e.to_string(),
        })?;
        self.backend.replace_manifest(id, old, &json)
    }
}

fn not_encrypted(id: &str) -> StorageError {
    StorageError::InvalidInput {
        field: "backup_id",
        value: id.to_owned(),
        message: "the backup is not encrypted".into(),
    }
}
