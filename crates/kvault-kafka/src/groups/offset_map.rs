//! [`OffsetMap`]: where one source partition's copies landed on the target, bounded in size.

/// Offset-map segments kept over all partitions of one operation (32 bytes each), shared out
/// per partition; only reached when gaps (a filter, compaction) fragment a copy into very many
/// runs.
const TOTAL_RUNS: usize = 1 << 20;
const MIN_RUNS: usize = 256;
const MAX_RUNS: usize = 1 << 16;

/// The segments each of `partitions` offset maps may hold.
pub(crate) fn runs_per_partition(partitions: usize) -> usize {
    (TOTAL_RUNS / partitions.max(1)).clamp(MIN_RUNS, MAX_RUNS)
}

/// Where one source partition's copied records landed on the target: run-length segments
/// (consecutive source offsets written to consecutive target offsets), in offset order. Exact
/// as long as it holds at most `max_runs` segments; beyond that it is thinned out (every
/// other segment dropped), which keeps memory bounded and makes translations that fall in a
/// thinned gap err early (see [`OffsetMap::translate`]).
#[derive(Debug)]
pub(crate) struct OffsetMap {
    runs: Vec<Run>,
    max_runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    source: i64,
    target: i64,
    len: i64,
    /// Nothing was copied between the previous run's end and this run's start (false once a
    /// run in between was thinned out).
    gap_exact: bool,
}

impl OffsetMap {
    pub(crate) fn new(max_runs: usize) -> Self {
        Self {
            runs: Vec::new(),
            max_runs: max_runs.max(4),
        }
    }

    /// Records that `len` consecutive records from `source` were written from `target` on
    /// (what a dry run predicts for a partition copied without gaps).
    pub(crate) fn record_run(&mut self, source: i64, target: i64, len: i64) {
        if len <= 0 {
            return;
        }
        self.record(source, target);
        if let Some(last) = self.runs.last_mut() {
            last.len += len - 1;
        }
    }

    /// Records that the record at `source` was written at `target`; calls come in increasing
    /// source (and target) order.
    pub(crate) fn record(&mut self, source: i64, target: i64) {
        if let Some(last) = self.runs.last_mut() {
            if source == last.source + last.len && target == last.target + last.len {
                last.len += 1;
                return;
            }
        }
        if self.runs.len() >= self.max_runs {
            self.thin();
        }
        self.runs.push(Run {
            source,
            target,
            len: 1,
            gap_exact: true,
        });
    }

    /// Drops every other run, always keeping the first and the last.
    pub(crate) fn thin(&mut self) {
        let last = self.runs.len().saturating_sub(1);
        let mut dropped = false;
        let mut kept = Vec::with_capacity(self.runs.len() / 2 + 1);
        for (i, run) in self.runs.drain(..).enumerate() {
            if i % 2 == 0 || i == last {
                kept.push(Run {
                    gap_exact: run.gap_exact && !dropped,
                    ..run
                });
                dropped = false;
            } else {
                dropped = true;
            }
        }
        self.runs = kept;
    }

    /// The target offset of the first copied record at or after source offset `committed`,
    /// and whether that is exact; `None` when no record at or after it was copied. In a
    /// thinned-out gap the answer is the target position right after the last known copy
    /// before `committed`: never past an unread record, at worst a few already-read records
    /// early (at-least-once, like Kafka's own offset translation).
    pub(crate) fn translate(&self, committed: i64) -> Option<(i64, bool)> {
        let i = self.runs.partition_point(|r| r.source + r.len <= committed);
        let run = self.runs.get(i)?;
        if committed >= run.source {
            return Some((run.target + (committed - run.source), true));
        }
        match i.checked_sub(1).map(|j| self.runs[j]) {
            Some(prev) if !run.gap_exact => Some((prev.target + prev.len, false)),
            _ => Some((run.target, true)),
        }
    }

    /// The target offset after the last copied record.
    pub(crate) fn end(&self) -> Option<i64> {
        self.runs.last().map(|r| r.target + r.len)
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetMap;

    /// Builds a map from `(source, target)` pairs.
    fn map(max_runs: usize, pairs: &[(i64, i64)]) -> OffsetMap {
        let mut m = OffsetMap::new(max_runs);
        for (s, t) in pairs {
            m.record(*s, *t);
        }
        m
    }

    #[test]
    fn contiguous_copy_is_one_run_and_translates_exactly() {
        let pairs: Vec<(i64, i64)> = (10..1_010).map(|s| (s, s + 90)).collect();
        let m = map(4, &pairs);
        assert_eq!(m.runs.len(), 1);
        assert_eq!(m.translate(0), Some((100, true)), "before the first copy");
        assert_eq!(m.translate(10), Some((100, true)));
        assert_eq!(m.translate(500), Some((590, true)));
        assert_eq!(m.translate(1_009), Some((1_099, true)));
        assert_eq!(m.translate(1_010), None, "nothing copied at or after");
        assert_eq!(m.end(), Some(1_100));
    }

    #[test]
    fn filtered_records_map_to_the_next_copy() {
        // Source 0..10, odd offsets filtered out: copies land at 0..5.
        let pairs: Vec<(i64, i64)> = (0..10).step_by(2).map(|s| (s, s / 2)).collect();
        let m = map(100, &pairs);
        assert_eq!(m.runs.len(), 5);
        for committed in 0..10 {
            // The next copy at or after `committed` is the next even source offset.
            let next_even = committed + committed % 2;
            let expected = (next_even < 10).then_some((next_even / 2, true));
            assert_eq!(m.translate(committed), expected, "committed {committed}");
        }
        assert_eq!(m.end(), Some(5));
    }

    #[test]
    fn thinning_bounds_memory_and_errs_early_never_late() {
        // 1000 copies of even source offsets, only 8 runs allowed.
        let pairs: Vec<(i64, i64)> = (0..2_000).step_by(2).map(|s| (s, s / 2)).collect();
        let m = map(8, &pairs);
        assert!(m.runs.len() <= 8, "{} runs", m.runs.len());
        assert_eq!(m.runs.first().map(|r| r.source), Some(0));
        assert_eq!(m.runs.last().map(|r| r.source), Some(1_998));
        let mut inexact = 0;
        for committed in 0..1_999 {
            let truth = (committed + committed % 2) / 2;
            let (target, exact) = m.translate(committed).expect("a copy follows");
            if exact {
                assert_eq!(target, truth, "committed {committed}");
            } else {
                inexact += 1;
                assert!(target <= truth, "committed {committed}: {target} > {truth}");
            }
        }
        assert!(inexact > 0, "thinning must show up as inexact answers");
        assert_eq!(m.translate(1_999), None, "the last copy is source 1998");
        assert_eq!(m.end(), Some(1_000));
    }
}
