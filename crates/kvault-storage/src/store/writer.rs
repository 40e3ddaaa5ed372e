//! The writer of one backup: hands out partition writers, writes the manifest last and
//! commits by renaming the staging directory into place.

use super::*;

/// State shared by a backup's writer and its partition writers.
pub(super) struct WriterShared {
    pub(super) spec: ArchiveSpec,
    pub(super) dir: PathBuf,
    pub(super) options: LocalStoreOptions,
    pub(super) taken: Mutex<HashSet<i32>>,
}

pub(super) struct LocalArchiveWriter {
    /// Held until commit or abort: tells sweeps this partial is alive.
    pub(super) lock: Option<PartialLock>,
    pub(super) shared: Arc<WriterShared>,
    pub(super) base: PathBuf,
    pub(super) final_dir: PathBuf,
    /// Set once committed or aborted, so `Drop` leaves the result alone.
    pub(super) done: bool,
}

impl LocalArchiveWriter {
    pub(super) fn id(&self) -> &str {
        self.shared.spec.backup_id.as_str()
    }

    pub(super) fn partition_inner(&self, partition: i32) -> Result<LocalPartitionWriter> {
        let id = self.id().to_owned();
        {
            let mut taken = self
                .shared
                .taken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !taken.insert(partition) {
                return Err(StorageError::PartitionTaken {
                    backup_id: id,
                    partition,
                });
            }
        }
        let rel_dir = format!("p{partition}");
        let dir = self.shared.dir.join(&rel_dir);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let encoder = Encoder::new(self.shared.spec.compression).map_err(|message| {
            StorageError::Compress {
                codec: self.shared.spec.compression.codec,
                message,
            }
        })?;
        Ok(LocalPartitionWriter {
            sinks: Box::new(FileSinks::new(&dir, IO_BUFFER)),
            backup_id: id,
            partition,
            dir,
            rel_dir,
            options: self.shared.options,
            codec: self.shared.spec.compression.codec,
            encoder,
            block: BlockBuilder::default(),
            compressed: Vec::new(),
            segment: None,
            segments: Vec::new(),
            closed_bytes: 0,
            count: 0,
            first: None,
            last: None,
            payload: 0,
        })
    }

    pub(super) fn commit_inner(
        &mut self,
        mut partitions: Vec<PartitionManifest>,
        finished_at: DateTime<Utc>,
    ) -> Result<Manifest> {
        let dir = self.shared.dir.clone();
        partitions.sort_by_key(|p| p.partition);
        if let Some(w) = partitions
            .windows(2)
            .find(|w| w[0].partition == w[1].partition)
        {
            return Err(StorageError::InvalidInput {
                field: "partitions",
                value: w[0].partition.to_string(),
                message: "partition listed twice".into(),
            });
        }
        // The manifest must describe files that exist: a caller passing a stale or foreign
        // PartitionManifest would otherwise produce a backup that can never be read.
        for s in partitions.iter().flat_map(|p| &p.segments) {
            let size = fs::metadata(dir.join(&s.file)).map(|m| m.len()).ok();
            if !is_safe_relative(&s.file) || size != Some(s.size_bytes) {
                return Err(StorageError::InvalidInput {
                    field: "partitions",
                    value: s.file.clone(),
                    message: "segment was not written by this backup (missing or different size)"
                        .into(),
                });
            }
        }
        let spec = &self.shared.spec;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            backup_id: spec.backup_id.as_str().to_owned(),
            cluster_id: spec.cluster_id.clone(),
            topic: spec.topic.clone(),
            compression: spec.compression,
            include_keys: spec.include_keys,
            include_headers: spec.include_headers,
            created_at: spec.created_at,
            finished_at,
            partitions,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::io(&dir, io::Error::other(e)))?;
        let path = dir.join(MANIFEST_FILE);
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&path))?;
        sync_dir(&dir)?;
        if self.final_dir.exists() {
            return Err(StorageError::BackupExists(self.id().to_owned()));
        }
        // The lock file is not part of a backup. Removing it leaves the partial briefly
        // lockless; sweeps give lockless partials a grace period, so this stays safe.
        let lock_file = dir.join(LOCK_FILE);
        fs::remove_file(&lock_file).map_err(io_err(&lock_file))?;
        fs::rename(&dir, &self.final_dir).map_err(io_err(&dir))?;
        self.lock = None;
        self.done = true;
        sync_dir(&self.base)?;
        Ok(manifest)
    }

    pub(super) fn remove_partial(&mut self) -> Result<()> {
        self.done = true;
        let removed = fs::remove_dir_all(&self.shared.dir);
        self.lock = None;
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&self.shared.dir, e)),
        }
    }
}

impl ArchiveWriter for LocalArchiveWriter {
    fn partition(&self, partition: i32) -> DomainResult<Box<dyn PartitionWriter>> {
        match self.partition_inner(partition) {
            Ok(w) => Ok(Box::new(w)),
            Err(e) => Err(e.into_domain(self.id())),
        }
    }

    fn commit(
        mut self: Box<Self>,
        partitions: Vec<PartitionManifest>,
        finished_at: DateTime<Utc>,
    ) -> DomainResult<Manifest> {
        let id = self.id().to_owned();
        self.commit_inner(partitions, finished_at)
            .map_err(|e| e.into_domain(&id))
    }

    fn abort(mut self: Box<Self>) -> DomainResult<()> {
        let id = self.id().to_owned();
        self.remove_partial().map_err(|e| e.into_domain(&id))
    }
}

impl Drop for LocalArchiveWriter {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.remove_partial() {
                tracing::warn!(error = %e, "could not remove an abandoned partial backup");
            }
        }
    }
}

pub(super) struct OpenSegment {
    pub(super) writer: SegmentWriter<Box<dyn SegmentSink>>,
    pub(super) path: PathBuf,
    pub(super) file: String,
}
