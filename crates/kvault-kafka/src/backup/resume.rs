//! The backup's checkpoint (see `kvault_domain::backup_resume`): recorded through the
//! operation's control once the cut is known, before any record is read, and again whenever a
//! partition finishes a segment or the groups at the cut are read; and what a resumed backup
//! takes from the checkpoint it was given.

use std::collections::BTreeMap;
use std::sync::Mutex;

use std::sync::Arc;

use kvault_domain::backup::BackupPlan;
use kvault_domain::backup_planning::PartitionRange;
use kvault_domain::backup_resume::{continue_at, BackupCheckpoint, ResumePoint};
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::manifest::{ConsumerGroupOffsets, SegmentInfo};
use kvault_domain::ports::{ArchiveSpec, ArchiveStore, Resumed};
use kvault_domain::DomainError;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::client::ClusterConfig;
use crate::groups::record_at_cut;

/// Keeps the running backup's checkpoint and hands every change to the control.
pub(super) struct Checkpointer {
    state: Mutex<BackupCheckpoint>,
    control: OperationControl,
}

impl Checkpointer {
    pub(super) fn new(checkpoint: BackupCheckpoint, control: OperationControl) -> Self {
        Self {
            state: Mutex::new(checkpoint),
            control,
        }
    }

    fn update(&self, change: impl FnOnce(&mut BackupCheckpoint) -> bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if change(&mut state) {
            self.control.checkpoint(state.to_json());
        }
    }

    /// Records the checkpoint as it stands (the cut, and what a resume kept).
    pub(super) fn record(&self) {
        self.update(|_| true);
    }

    /// Notes what a resume kept: the segments (under their new names) and the resume point.
    pub(super) fn resumed(&self, kept: &BTreeMap<i32, Vec<SegmentInfo>>, point: ResumePoint) {
        self.update(|state| {
            state.segments = kept.clone();
            state.resumed_from = Some(point);
            false
        });
    }

    /// Notes the finished segments of `partition`, recording them when they changed.
    pub(super) fn segments(&self, partition: i32, finished: &[SegmentInfo]) {
        self.update(|state| {
            let known = state.segments.get(&partition).map_or(0, Vec::len);
            if finished.len() == known {
                return false;
            }
            state.segments.insert(partition, finished.to_vec());
            true
        });
    }

    /// Notes on the job's attempt where this resumed attempt continued (`GET /jobs/{id}`'s
    /// `attempts[].resumed_from`); an error means the attempt no longer holds the job.
    pub(super) async fn note_resume_point(&self, point: &ResumePoint) -> DomainResult<()> {
        match self.control.journal() {
            Some(journal) => journal.record_resume_point(point.to_json()).await,
            None => Ok(()),
        }
    }

    /// What the resume kept, once [`Self::resumed`] noted it.
    pub(super) fn resume_point(&self) -> Option<ResumePoint> {
        self.state.lock().ok()?.resumed_from.clone()
    }

    /// Notes the groups' offsets at the cut.
    pub(super) fn groups(&self, groups: &[ConsumerGroupOffsets]) {
        self.update(|state| {
            state.consumer_groups = Some(groups.to_vec());
            true
        });
    }
}

/// Where each partition's reading starts: after the last adopted segment, or at the range's
/// start.
pub(super) fn read_from(
    ranges: &[PartitionRange],
    adopted: &BTreeMap<i32, Vec<SegmentInfo>>,
) -> BTreeMap<i32, i64> {
    ranges
        .iter()
        .map(|r| {
            let kept = adopted.get(&r.partition).map_or(&[][..], Vec::as_slice);
            (r.partition, continue_at(r, kept))
        })
        .collect()
}

/// The groups' committed offsets at the cut, read (in the background, while the partitions
/// are copied: a cluster with many groups takes a while) right after the watermarks that
/// define the cut, and noted in the checkpoint; a resumed backup uses the ones its first
/// attempt read, when it got that far. Yields the groups and warnings about them.
pub(super) fn spawn_groups(
    (admin, cluster): (&Admin, &ClusterConfig),
    plan: &BackupPlan,
    selected: &[i32],
    recorded: Option<Vec<ConsumerGroupOffsets>>,
    checkpoints: Arc<Checkpointer>,
) -> JoinHandle<DomainResult<(Vec<ConsumerGroupOffsets>, Vec<String>)>> {
    let (admin, cluster) = (admin.clone(), cluster.clone());
    let (topic, selected, selection) = (
        plan.topic.clone(),
        selected.to_vec(),
        plan.consumer_groups.clone(),
    );
    tokio::spawn(async move {
        if let Some(groups) = recorded {
            return Ok((groups, Vec::new()));
        }
        let read = record_at_cut(&admin, &cluster, &topic, &selected, &selection).await;
        if let Ok((groups, _)) = &read {
            checkpoints.groups(groups);
        }
        read
    })
}

/// The archive writer: a new archive, or with `resume` the archive its first attempt was
/// writing, keeping the segments the store still vouches for (noted in the checkpoint with
/// the resume point). Then the checkpoint is recorded: before the first record is read, so a
/// later attempt keeps this cut. Returns the writer and what it kept.
pub(super) async fn open_archive(
    store: &dyn ArchiveStore,
    spec: ArchiveSpec,
    resume: Option<BackupCheckpoint>,
    ranges: &[PartitionRange],
    checkpoints: &Checkpointer,
) -> DomainResult<Resumed> {
    let opened = match resume {
        Some(checkpoint) => {
            let adopting = std::time::Instant::now();
            let (writer, kept) = store.resume(spec, checkpoint.segments).await?;
            let point = ResumePoint::of(ranges, &kept);
            let adopt_ms = adopting.elapsed().as_millis() as u64;
            tracing::info!(resumed_from = %point.to_json(), adopt_ms, "backup resumed");
            checkpoints.note_resume_point(&point).await?;
            checkpoints.resumed(&kept, point);
            (writer, kept)
        }
        None => (store.create(spec).await?, BTreeMap::new()),
    };
    checkpoints.record();
    Ok(opened)
}

/// The groups [`spawn_groups`] read; what could not be read is a warning, not a failure.
pub(super) async fn groups_at_cut(
    groups: JoinHandle<DomainResult<(Vec<ConsumerGroupOffsets>, Vec<String>)>>,
    warnings: &mut Vec<String>,
) -> Vec<ConsumerGroupOffsets> {
    let recorded = groups
        .await
        .map_err(|e| DomainError::internal(format!("consumer group reader failed: {e}")))
        .and_then(|r| r);
    match recorded {
        Ok((groups, group_warnings)) => {
            warnings.extend(group_warnings);
            groups
        }
        Err(e) => {
            warnings.push(format!("consumer groups could not be recorded ({e})"));
            Vec::new()
        }
    }
}
