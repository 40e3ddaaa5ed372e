//! The writer of one partition: blocks, segment cutting over a [`SegmentSinks`], stats and
//! the partition's manifest entry.

use super::*;

/// Writes one partition: buffers one block of records, compresses it, appends it to the
/// current segment, and rolls segments at the size threshold.
pub(super) struct StorePartitionWriter {
    /// Where segment bytes go: files here, a multipart upload in an object store.
    pub(super) sinks: Box<dyn SegmentSinks>,
    pub(super) backup_id: String,
    pub(super) partition: i32,
    pub(super) rel_dir: String,
    /// The archive's data key when it is encrypted: each segment is sealed under it.
    pub(super) key: Option<ArchiveKey>,
    pub(super) options: StoreOptions,
    pub(super) codec: CompressionType,
    pub(super) encoder: Encoder,
    pub(super) block: BlockBuilder,
    pub(super) compressed: Vec<u8>,
    pub(super) segment: Option<OpenSegment>,
    pub(super) segments: Vec<SegmentInfo>,
    pub(super) closed_bytes: u64,
    pub(super) count: u64,
    pub(super) first: Option<i64>,
    pub(super) last: Option<i64>,
    pub(super) payload: u64,
}

impl StorePartitionWriter {
    /// Starts with the finished segments a resumed writer kept: the partition's counts
    /// continue from them and the next record must come after their last offset.
    pub(super) fn start_with(&mut self, kept: Vec<SegmentInfo>) {
        for s in &kept {
            self.first.get_or_insert(s.first_offset);
            self.last = Some(s.last_offset);
            self.count += s.message_count;
            self.payload += s.raw_bytes;
            self.closed_bytes += s.size_bytes;
        }
        self.segments = kept;
    }

    /// An I/O error on `file` (relative to the backup), named from the backup id on.
    fn io_error(&self, file: &str, e: std::io::Error) -> StorageError {
        StorageError::io(format!("{}/{file}", self.backup_id), e)
    }

    fn append_inner(&mut self, r: &RecordView<'_>) -> Result<()> {
        if let Some(prev) = self.last {
            if r.offset <= prev {
                return Err(StorageError::AppendOrder {
                    partition: self.partition,
                    previous: prev,
                    found: r.offset,
                });
            }
        }
        let size = encoded_len(r);
        if r.header_count() > MAX_HEADERS_PER_RECORD {
            return Err(StorageError::TooManyHeaders {
                partition: self.partition,
                offset: r.offset,
                count: r.header_count(),
                max: MAX_HEADERS_PER_RECORD,
            });
        }
        if size > u64::from(MAX_BLOCK_RAW_LEN) {
            return Err(StorageError::RecordTooLarge {
                partition: self.partition,
                offset: r.offset,
                size,
                max: MAX_BLOCK_RAW_LEN.into(),
            });
        }
        if !self.block.is_empty()
            && self.block.raw.len() as u64 + size > self.options.block_size as u64
        {
            self.flush_block()?;
        }
        self.block.push(r);
        self.first.get_or_insert(r.offset);
        self.last = Some(r.offset);
        self.count += 1;
        self.payload += r.payload_len();
        if self.block.raw.len() >= self.options.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.encoder
            .compress(&self.block.raw, &mut self.compressed)
            .map_err(|source| StorageError::Compress {
                codec: self.codec,
                source,
            })?;
        if self.segment.is_none() {
            let name = format!("{:020}.seg", self.block.first_offset);
            let file = format!("{}/{name}", self.rel_dir);
            let sink = self
                .sinks
                .create(&name)
                .map_err(|e| self.io_error(&file, e))?;
            let seal = self.key.as_ref().map(|k| k.segment(&file));
            let writer =
                SegmentWriter::new(sink, self.codec, seal).map_err(|e| self.io_error(&file, e))?;
            self.segment = Some(OpenSegment { writer, file });
        }
        if let Some(seg) = self.segment.as_mut() {
            seg.writer
                .write_block(&self.block, &self.compressed)
                .map_err(|e| StorageError::io(format!("{}/{}", self.backup_id, seg.file), e))?;
            let full = seg.writer.size() >= self.options.segment_size;
            self.block.clear();
            if full {
                self.close_segment(false)?;
            }
        }
        Ok(())
    }

    /// Closes the open segment; the partition's `last` one may be made durable by the commit.
    fn close_segment(&mut self, last: bool) -> Result<()> {
        let Some(seg) = self.segment.take() else {
            return Ok(());
        };
        let (sink, stats) = seg
            .writer
            .finish()
            .map_err(|e| self.io_error(&seg.file, e))?;
        let finished = if last {
            sink.finish_last()
        } else {
            sink.finish()
        };
        finished.map_err(|e| self.io_error(&seg.file, e))?;
        self.closed_bytes += stats.size;
        self.segments.push(SegmentInfo {
            file: seg.file,
            sha256: stats.sha256,
            size_bytes: stats.size,
            block_count: stats.blocks,
            message_count: stats.records,
            first_offset: stats.first_offset.unwrap_or_default(),
            last_offset: stats.last_offset.unwrap_or_default(),
            min_timestamp: stats.min_timestamp.unwrap_or_default(),
            max_timestamp: stats.max_timestamp.unwrap_or_default(),
            raw_bytes: stats.payload,
        });
        Ok(())
    }

    fn finish_inner(&mut self, start_offset: i64, end_offset: i64) -> Result<PartitionManifest> {
        self.flush_block()?;
        self.close_segment(true)?;
        self.sinks
            .sync()
            .map_err(|e| self.io_error(&self.rel_dir, e))?;
        // Offsets strictly increase, so `count == last - first + 1` means no gap. An empty
        // partition has no gap among its (zero) records and is reported contiguous.
        let contiguous = match (self.first, self.last) {
            (Some(first), Some(last)) => {
                first == start_offset && last.abs_diff(first).checked_add(1) == Some(self.count)
            }
            _ => true,
        };
        Ok(PartitionManifest {
            partition: self.partition,
            start_offset,
            end_offset,
            first_offset: self.first,
            last_offset: self.last,
            message_count: self.count,
            raw_bytes: self.payload,
            compressed_bytes: self.closed_bytes,
            contiguous,
            segments: std::mem::take(&mut self.segments),
        })
    }
}

impl PartitionWriter for StorePartitionWriter {
    fn append_view(&mut self, record: RecordView<'_>) -> DomainResult<()> {
        self.append_inner(&record)
            .map_err(|e| e.into_domain(&self.backup_id))
    }

    fn bytes_written(&self) -> u64 {
        self.closed_bytes + self.segment.as_ref().map_or(0, |s| s.writer.size())
    }

    fn finished_segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    fn finish(
        mut self: Box<Self>,
        start_offset: i64,
        end_offset: i64,
    ) -> DomainResult<PartitionManifest> {
        let id = self.backup_id.clone();
        self.finish_inner(start_offset, end_offset)
            .map_err(|e| e.into_domain(&id))
    }
}
