//! The retention sweep: only expired backups, never one a job uses, and a failed delete does
//! not stop the sweep (it is logged and counted in the Prometheus `/metrics`).

use std::sync::Arc;

use async_trait::async_trait;
use kvault_api::auth::Role;
use kvault_api::retention::sweep_retention;
use kvault_domain::error::DomainResult;
use kvault_domain::job::OperationControl;
use kvault_domain::ports::{
    ArchiveSpec, ArchiveStore, ArchiveWriter, ReadBounds, RecordReader, VerifyReport,
};
use kvault_domain::{BackupId, DomainError, Manifest};
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_retention_sweeper_deletes_only_expired_backups() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    app.completed_backup(&topic).await;
    let store = app.app_state.archives.clone();
    let now = chrono::Utc::now();
    let kept = sweep_retention(store.as_ref(), 30, now, |_| false)
        .await
        .unwrap();
    assert!(kept.deleted.is_empty());
    let later = now + chrono::Duration::days(31);
    let in_use = sweep_retention(store.as_ref(), 30, later, |_| true)
        .await
        .unwrap();
    assert!(in_use.deleted.is_empty());
    let swept = sweep_retention(store.as_ref(), 30, later, |_| false)
        .await
        .unwrap();
    assert_eq!(swept.deleted.len(), 1);
    let list: Value = app.get_json("/api/kafka/backups", Role::Viewer).await;
    assert!(list["backups"].as_array().unwrap().is_empty());
}

/// A store whose delete of one backup fails, like a file held open or a permission error.
struct FailingDelete {
    inner: Arc<dyn ArchiveStore>,
    fails: String,
}

#[async_trait]
impl ArchiveStore for FailingDelete {
    async fn create(&self, spec: ArchiveSpec) -> DomainResult<Box<dyn ArchiveWriter>> {
        self.inner.create(spec).await
    }
    async fn manifest(&self, id: &BackupId) -> DomainResult<Manifest> {
        self.inner.manifest(id).await
    }
    async fn read_partition(
        &self,
        id: &BackupId,
        partition: i32,
        bounds: ReadBounds,
    ) -> DomainResult<Box<dyn RecordReader>> {
        self.inner.read_partition(id, partition, bounds).await
    }
    async fn list(&self) -> DomainResult<Vec<Manifest>> {
        self.inner.list().await
    }
    async fn delete(&self, id: &BackupId) -> DomainResult<()> {
        if id.as_str() == self.fails {
            return Err(DomainError::storage("permission denied (test)"));
        }
        self.inner.delete(id).await
    }
    async fn verify(
        &self,
        id: &BackupId,
        control: &OperationControl,
    ) -> DomainResult<VerifyReport> {
        self.inner.verify(id, control).await
    }
}

#[tokio::test]
async fn a_failed_delete_does_not_stop_the_sweep() {
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    let ids: Vec<String> = [
        app.completed_backup(&topic).await,
        app.completed_backup(&topic).await,
        app.completed_backup(&topic).await,
    ]
    .iter()
    .map(|b| b["backup_id"].as_str().unwrap().to_owned())
    .collect();
    // Listing is newest first: make the first one the sweep meets fail.
    let listed = app.app_state.archives.list().await.unwrap();
    let store = FailingDelete {
        inner: app.app_state.archives.clone(),
        fails: listed[0].backup_id.clone(),
    };
    let later = chrono::Utc::now() + chrono::Duration::days(31);
    let outcome = sweep_retention(&store, 30, later, |_| false).await.unwrap();
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failed[0].0, listed[0].backup_id);
    assert_eq!(outcome.deleted.len(), 2, "the sweep went on: {outcome:?}");
    let left = app.app_state.archives.list().await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(ids.contains(&left[0].backup_id));
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE kvault_retention_failures_total counter"),
        "{text}"
    );
    assert!(
        text.contains("kvault_retention_deletions_total 0"),
        "{text}"
    );
}

#[tokio::test]
async fn retention_keeps_the_chain_a_job_reads_and_trims_schedules_from_their_oldest_run() {
    use kvault_api::retention::{sweep_expired, RecordedRun, ScheduleRuns};
    let app = spawn_app().await;
    let topic = app.topic_with(1, 3).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut body = serde_json::json!({"topic": topic, "backup_id": format!("run-{n}")});
        if n > 0 {
            body["incremental_from"] = format!("run-{}", n - 1).into();
        }
        let resp = app
            .post("/api/kafka/clusters/local/backup", Role::Operator, &body)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        ids.push(format!("run-{n}"));
    }
    let store = app.app_state.archives.clone();
    let later = chrono::Utc::now() + chrono::Duration::days(31);
    // A restore of the chain's last link reads every link: none of them goes.
    let reading_tip = sweep_retention(store.as_ref(), 30, later, |id| id == "run-2")
        .await
        .unwrap();
    assert!(reading_tip.deleted.is_empty(), "{reading_tip:?}");
    // A schedule's retention deletes its expired runs oldest first, never its newest run.
    let listed = store.list().await.unwrap();
    let recorded = |id: &String| RecordedRun {
        backup_id: id.clone(),
        uid: listed
            .iter()
            .find(|m| &m.backup_id == id)
            .and_then(|m| m.archive_uid.clone()),
    };
    let runs = |cluster_id: &str, runs: Vec<RecordedRun>| ScheduleRuns {
        retention: std::time::Duration::from_secs(3600),
        cluster_id: kvault_domain::ClusterId::parse(cluster_id).unwrap(),
        runs,
    };
    // Runs whose recorded uid or cluster is not the archive's are not the schedule's.
    let mut foreign: Vec<RecordedRun> = ids.iter().rev().map(recorded).collect();
    for run in &mut foreign {
        run.uid = Some(kvault_domain::ids::new_uid());
    }
    let elsewhere = runs("other", ids.iter().rev().map(recorded).collect());
    let not_theirs = sweep_expired(
        store.as_ref(),
        0,
        &[runs("local", foreign), elsewhere],
        later,
        |_| false,
    )
    .await
    .unwrap();
    assert!(not_theirs.deleted.is_empty(), "{not_theirs:?}");
    let runs = runs("local", ids.iter().rev().map(recorded).collect());
    let swept = sweep_expired(store.as_ref(), 0, &[runs], later, |_| false)
        .await
        .unwrap();
    assert_eq!(swept.deleted, vec!["run-0".to_owned(), "run-1".to_owned()]);
    let left = store.list().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].backup_id, "run-2");
}
