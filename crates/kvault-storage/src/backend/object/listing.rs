//! The committed backups of a bucket with a version tag per manifest, from one LIST of the
//! root (one request per 1,000 keys): what the store's catalog needs to read each manifest
//! only once per process instead of once per listing.

use futures::TryStreamExt;

use super::io;
use super::Bucket;
use crate::backend::local::MANIFEST_FILE;
use crate::error::{Result, StorageError};

/// `(id, tag)` of every `{id}/manifest.json` under the root; the tag is the object's ETag
/// (with its size and modification time when the server gives none), which changes whenever
/// the object is written again.
pub(super) fn manifests(shared: &std::sync::Arc<Bucket>) -> Result<Vec<(String, Option<String>)>> {
    let s = shared.clone();
    let metas =
        io::block_on(async move { s.store.list(Some(&s.root)).try_collect::<Vec<_>>().await })
            .map_err(StorageError::Object)?
            .map_err(|e| shared.error(&shared.root, e))?;
    Ok(metas
        .into_iter()
        .filter_map(|meta| {
            let parts: Vec<String> = meta
                .location
                .prefix_match(&shared.root)?
                .map(|p| p.as_ref().to_owned())
                .collect();
            let [id, name] = parts.as_slice() else {
                return None;
            };
            if name != MANIFEST_FILE {
                return None;
            }
            let tag = meta.e_tag.clone().unwrap_or_else(|| {
                format!("{}@{}", meta.size, meta.last_modified.timestamp_micros())
            });
            Some((id.clone(), Some(tag)))
        })
        .collect())
}
