//! The store's blocking API and the async [`ArchiveStore`] port over it.

use super::*;

/// The blocking API: what the async [`ArchiveStore`] methods run on a blocking thread. Tests,
/// benches and synchronous tools that own the store call these directly. The `blocking_`
/// prefix keeps them from shadowing the async trait methods of the same job.
impl Store {
    pub fn blocking_create(&self, spec: ArchiveSpec) -> DomainResult<Box<dyn ArchiveWriter>> {
        let id = spec.backup_id.as_str().to_owned();
        match self.create_inner(spec) {
            Ok(w) => Ok(Box::new(w)),
            Err(e) => Err(e.into_domain(&id)),
        }
    }

    /// The blocking side of [`ArchiveStore::resume`].
    pub fn blocking_resume(
        &self,
        spec: ArchiveSpec,
        committed: BTreeMap<i32, Vec<SegmentInfo>>,
    ) -> DomainResult<Resumed> {
        let id = spec.backup_id.as_str().to_owned();
        match self.resume_inner(spec, committed) {
            Ok((writer, kept)) => Ok((Box::new(writer), kept)),
            Err(e) => Err(e.into_domain(&id)),
        }
    }

    pub fn blocking_manifest(&self, id: &BackupId) -> DomainResult<Manifest> {
        self.load_manifest(id.as_str())
            .map_err(|e| e.into_domain(id.as_str()))
    }

    pub fn blocking_read_partition(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn RecordReader>> {
        match self.open_partition(id.as_str(), partition, bounds) {
            Ok(r) => Ok(Box::new(PartitionRecords::new(r))),
            Err(e) => Err(e.into_domain(id.as_str())),
        }
    }

    /// The same records as [`Store::blocking_read_partition`], a decoded block at a time.
    pub fn blocking_read_partition_blocks(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn BlockReader>> {
        match self.open_partition(id.as_str(), partition, bounds) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(e.into_domain(id.as_str())),
        }
    }

    /// [`Store::blocking_read_partition_blocks`] from a manifest this store gave earlier.
    pub fn blocking_read_blocks_of(
        &self,
        manifest: &Manifest,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn BlockReader>> {
        match self.partition_of(manifest, partition, bounds) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(e.into_domain(&manifest.backup_id)),
        }
    }

    pub fn blocking_list(&self) -> DomainResult<Vec<Manifest>> {
        self.list_inner().map_err(|e| e.into_domain(""))
    }

    /// Deletes committed backup `id`, unless retention still locks it (`ArchiveLocked`, and
    /// nothing is touched).
    pub fn blocking_delete(&self, id: &BackupId) -> DomainResult<()> {
        self.delete_unlocked(id.as_str())
            .map_err(|e| e.into_domain(id.as_str()))
    }

    fn delete_unlocked(&self, id: &str) -> Result<()> {
        let manifest = match self.load_manifest(id) {
            Ok(manifest) => Some(manifest),
            Err(StorageError::BackupNotFound(_)) => {
                return Err(StorageError::BackupNotFound(id.to_owned()))
            }
            // An unreadable manifest says nothing of a lock; the backend still checks its own.
            Err(e) if e.is_corruption() => None,
            Err(e) => return Err(e),
        };
        if let Some(until) = manifest.and_then(|m| m.immutable_until.filter(|u| *u > Utc::now())) {
            return Err(StorageError::ArchiveLocked {
                backup_id: id.to_owned(),
                until,
            });
        }
        self.backend.delete(id)
    }

    /// The full check behind `POST /backups/{id}/verify`: every segment read and decoded,
    /// every count compared with the manifest. Segments are checked in parallel.
    pub fn blocking_verify(
        &self,
        id: &BackupId,
        control: &OperationControl,
    ) -> DomainResult<VerifyReport> {
        verify::verify_archive(self, id, control, VerifyMode::Decode)
    }

    /// The fast integrity check to run before a restore: every segment's SHA-256 and every
    /// block's CRC32C over the compressed bytes, without decompressing or parsing records
    /// (the restore's own decode checks those). Segments are checked in parallel.
    /// `messages_checked` counts the records the block headers declare.
    pub fn blocking_verify_integrity(
        &self,
        id: &BackupId,
        control: &OperationControl,
    ) -> DomainResult<VerifyReport> {
        verify::verify_archive(self, id, control, VerifyMode::BytesOnly)
    }

    /// Runs `f` on a clone of the store on a blocking thread.
    async fn off_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> DomainResult<T> + Send + 'static,
    ) -> DomainResult<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| DomainError::internal(format!("archive store task failed: {e}")))?
    }
}

#[async_trait]
impl ArchiveStore for Store {
    async fn create(&self, spec: ArchiveSpec) -> DomainResult<Box<dyn ArchiveWriter>> {
        self.off_runtime(move |s| s.blocking_create(spec)).await
    }

    async fn manifest(&self, id: &BackupId) -> DomainResult<Manifest> {
        let id = id.clone();
        self.off_runtime(move |s| s.blocking_manifest(&id)).await
    }

    async fn read_partition(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn RecordReader>> {
        let id = id.clone();
        self.off_runtime(move |s| s.blocking_read_partition(&id, partition, bounds))
            .await
    }

    async fn read_partition_blocks(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn BlockReader>> {
        let id = id.clone();
        self.off_runtime(move |s| s.blocking_read_partition_blocks(&id, partition, bounds))
            .await
    }

    async fn read_blocks_of(
        &self,
        manifest: Arc<Manifest>,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn BlockReader>> {
        self.off_runtime(move |s| s.blocking_read_blocks_of(&manifest, partition, bounds))
            .await
    }

    async fn list(&self) -> DomainResult<Vec<Manifest>> {
        self.off_runtime(|s| s.blocking_list()).await
    }

    async fn delete(&self, id: &BackupId) -> DomainResult<()> {
        let id = id.clone();
        self.off_runtime(move |s| s.blocking_delete(&id)).await
    }

    async fn verify(
        &self,
        id: &BackupId,
        control: &OperationControl,
    ) -> DomainResult<VerifyReport> {
        let id = id.clone();
        let control = control.clone();
        self.off_runtime(move |s| s.blocking_verify(&id, &control))
            .await
    }

    async fn check_integrity(
        &self,
        id: &BackupId,
        control: &OperationControl,
    ) -> DomainResult<VerifyReport> {
        let id = id.clone();
        let control = control.clone();
        self.off_runtime(move |s| s.blocking_verify_integrity(&id, &control))
            .await
    }

    async fn resume(
        &self,
        spec: ArchiveSpec,
        committed: BTreeMap<i32, Vec<SegmentInfo>>,
    ) -> DomainResult<Resumed> {
        self.off_runtime(move |s| s.blocking_resume(spec, committed))
            .await
    }

    async fn discard_unfinished(&self, id: &BackupId) -> DomainResult<()> {
        let id = id.clone();
        self.off_runtime(move |s| {
            s.backend()
                .discard_unfinished(id.as_str())
                .map_err(|e| e.into_domain(id.as_str()))
        })
        .await
    }

    async fn sweep_abandoned(&self) -> DomainResult<usize> {
        self.off_runtime(|s| Ok(s.sweep_abandoned())).await
    }

    async fn rewrap_key(&self, id: &BackupId, to: &str) -> DomainResult<super::Rewrapped> {
        let (id, to) = (id.clone(), to.to_owned());
        self.off_runtime(move |s| s.blocking_rewrap(&id, &to)).await
    }

    async fn shred_key(&self, id: &BackupId) -> DomainResult<Manifest> {
        let id = id.clone();
        self.off_runtime(move |s| s.blocking_shred(&id)).await
    }
}
