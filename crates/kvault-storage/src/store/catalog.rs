//! The listing's index of manifests. Listing backups used to read every manifest (on S3 one
//! GET per backup per listing); the catalog keeps each parsed manifest in memory, keyed by
//! the tag the backend's listing gives it (an S3 ETag), so a manifest is read once per process
//! while it stays the same.
//!
//! The backend's listing stays the source of truth: a backup is listed only while its manifest
//! (the commit point) is there, so nothing uncommitted is ever listed; what other replicas or
//! a person add or delete shows at the next listing; an entry whose backup is gone is dropped.
//! It is kept per process rather than in the job database or an index object because the
//! listing it needs is already there (one LIST per 1,000 keys) and it then cannot disagree with
//! the bucket: a database row or an index object would need writing at every commit and
//! delete, by every writer (the CLI included), and repairing when one is missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kvault_domain::{BackupId, Manifest};

use super::Store;
use crate::backend::local::PARTIAL_SUFFIX;
use crate::error::{Result, StorageError};

/// Parsed manifests by backup id, each with the tag it was read under.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    entries: Mutex<HashMap<String, (String, Arc<Manifest>)>>,
}

impl Catalog {
    fn cached(&self, id: &str, tag: &str) -> Option<Arc<Manifest>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(id)
            .filter(|(cached_tag, _)| cached_tag == tag)
            .map(|(_, manifest)| manifest.clone())
    }

    fn keep_only(&self, found: HashMap<String, (String, Arc<Manifest>)>) {
        *self.entries.lock().unwrap_or_else(PoisonError::into_inner) = found;
    }
}

impl Store {
    /// Every committed backup, newest first: the backend's listing, with each manifest taken
    /// from the catalog while its tag is unchanged and read (once) otherwise.
    pub(crate) fn list_inner(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        let mut found = HashMap::new();
        for (name, tag) in self.backend().list_manifests()? {
            if name.ends_with(PARTIAL_SUFFIX) || BackupId::parse(&name).is_err() {
                continue;
            }
            if let Some(manifest) = tag.as_deref().and_then(|t| self.catalog.cached(&name, t)) {
                out.push(Manifest::clone(&manifest));
                found.insert(name, (tag.unwrap_or_default(), manifest));
                continue;
            }
            match self.load_manifest(&name) {
                Ok(m) => {
                    if let Some(tag) = tag {
                        found.insert(name, (tag, Arc::new(m.clone())));
                    }
                    out.push(m);
                }
                // Deleted between the listing and the read.
                Err(StorageError::BackupNotFound(_)) => {}
                // One unreadable backup must not hide the others; verify reports it.
                Err(e) if e.is_corruption() => {
                    tracing::warn!(backup_id = %name, error = %e, "skipping unreadable backup")
                }
                Err(e) => return Err(e),
            }
        }
        self.catalog.keep_only(found);
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.backup_id.cmp(&b.backup_id))
        });
        Ok(out)
    }
}
