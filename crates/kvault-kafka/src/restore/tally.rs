//! Where a restore's records landed, per target partition: what the result reports and what a
//! failure says was written.

use std::collections::BTreeMap;

use kvault_domain::restore::PartitionRestoreResult;

/// Where produced records landed, per target partition.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LandedOffsets {
    pub(super) count: u64,
    pub(super) first: i64,
    pub(super) last: i64,
}

#[derive(Default)]
pub(super) struct Tally {
    pub(super) partitions: BTreeMap<i32, LandedOffsets>,
}

impl Tally {
    /// Per target partition: how many records landed, from which offset to which.
    pub(super) fn partition_results(&self) -> Vec<PartitionRestoreResult> {
        self.partitions
            .iter()
            .map(|(p, l)| PartitionRestoreResult {
                partition: *p,
                messages_count: l.count,
                start_offset: l.first,
                end_offset: l.last + 1,
            })
            .collect()
    }

    pub(super) fn add(&mut self, partition: i32, offset: i64) {
        let entry = self.partitions.entry(partition).or_insert(LandedOffsets {
            count: 0,
            first: offset,
            last: offset,
        });
        entry.count += 1;
        entry.first = entry.first.min(offset);
        entry.last = entry.last.max(offset);
    }

    pub(super) fn total(&self) -> u64 {
        self.partitions.values().map(|l| l.count).sum()
    }

    pub(super) fn describe(&self) -> String {
        if self.partitions.is_empty() {
            return "no records were written".into();
        }
        let parts: Vec<String> = self
            .partitions
            .iter()
            .map(|(p, l)| {
                format!(
                    "partition {p}: {} (offsets {}..={})",
                    l.count, l.first, l.last
                )
            })
            .collect();
        format!(
            "{} records were written: {}",
            self.total(),
            parts.join(", ")
        )
    }
}
