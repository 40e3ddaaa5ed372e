//! The writer of one backup: hands out partition writers and commits by writing the
//! manifest last, through its backend's [`Staging`].

use super::*;

pub(super) struct StoreWriter {
    /// The backend's side of the backup being written; dropping it uncommitted aborts it.
    pub(super) staging: Box<dyn Staging>,
    pub(super) spec: ArchiveSpec,
    pub(super) options: StoreOptions,
    pub(super) taken: Mutex<HashSet<i32>>,
    /// Segments a resumed writer kept, per partition: its partition writers start with them.
    pub(super) adopted: std::collections::BTreeMap<i32, Vec<SegmentInfo>>,
    /// For an encrypted archive: its data key and the manifest's record of it (wrapped).
    pub(super) crypt: Option<(ArchiveKey, kvault_domain::manifest::ArchiveEncryption)>,
}

impl StoreWriter {
    pub(super) fn id(&self) -> &str {
        self.spec.backup_id.as_str()
    }

    pub(super) fn partition_inner(&self, partition: i32) -> Result<StorePartitionWriter> {
        let id = self.id().to_owned();
        {
            let mut taken = self
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
        let rel_dir = self.staging.segment_dir(&format!("p{partition}"));
        let sinks = self.staging.sinks(&rel_dir)?;
        let encoder =
            Encoder::new(self.spec.compression).map_err(|source| StorageError::Compress {
                codec: self.spec.compression.codec,
                source,
            })?;
        let mut writer = StorePartitionWriter {
            sinks,
            backup_id: id,
            partition,
            rel_dir,
            key: self.crypt.as_ref().map(|(k, _)| k.clone()),
            options: self.options,
            codec: self.spec.compression.codec,
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
        };
        if let Some(kept) = self.adopted.get(&partition) {
            writer.start_with(kept.clone());
        }
        Ok(writer)
    }

    pub(super) fn commit_inner(
        &mut self,
        mut partitions: Vec<PartitionManifest>,
        finished_at: DateTime<Utc>,
    ) -> Result<Manifest> {
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
        // The manifest must describe segments that exist: a caller passing a stale or foreign
        // PartitionManifest would otherwise produce a backup that can never be read.
        for s in partitions.iter().flat_map(|p| &p.segments) {
            let written = if is_safe_relative(&s.file) {
                self.staging.segment_size(&s.file)?
            } else {
                None
            };
            if written != Some(s.size_bytes) {
                return Err(StorageError::InvalidInput {
                    field: "partitions",
                    value: s.file.clone(),
                    message: "segment was not written by this backup (missing or different size)"
                        .into(),
                });
            }
        }
        let spec = &self.spec;
        let manifest = Manifest {
            format_version: if self.crypt.is_some() {
                ENCRYPTED_FORMAT_VERSION
            } else {
                FORMAT_VERSION
            },
            backup_id: spec.backup_id.as_str().to_owned(),
            archive_uid: Some(spec.archive_uid.clone()),
            cluster_id: spec.cluster_id.to_string(),
            topic: spec.topic.clone(),
            compression: spec.compression,
            include_keys: spec.include_keys,
            include_headers: spec.include_headers,
            created_at: spec.created_at,
            finished_at,
            partitions,
            consumer_groups: spec.consumer_groups.clone(),
            backup_set: spec.backup_set.clone(),
            chain: spec.chain.clone(),
            encryption: self.crypt.as_ref().map(|(_, e)| e.clone()),
            // The backend locks every object of the archive until this very instant.
            immutable_until: self.staging.retain_until(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| StorageError::BadManifest {
            file: format!("{}/{MANIFEST_FILE}", self.id()),
            reason: e.to_string(),
        })?;
        self.staging.commit(&json)?;
        Ok(manifest)
    }
}

impl ArchiveWriter for StoreWriter {
    fn partition(&self, partition: i32) -> DomainResult<Box<dyn PartitionWriter>> {
        match self.partition_inner(partition) {
            Ok(w) => Ok(Box::new(w)),
            Err(e) => Err(e.into_domain(self.id())),
        }
    }

    fn set_consumer_groups(&mut self, groups: Vec<kvault_domain::manifest::ConsumerGroupOffsets>) {
        self.spec.consumer_groups = groups;
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
        self.staging.abort().map_err(|e| e.into_domain(&id))
    }
}

pub(super) struct OpenSegment {
    pub(super) writer: SegmentWriter<Box<dyn SegmentSink>>,
    /// Relative to the backup: `p0/00000000000000000000.seg`.
    pub(super) file: String,
}
