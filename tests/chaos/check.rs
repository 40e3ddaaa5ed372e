//! The invariants checked after the chaos workload, each with a client independent of kvault:
//! plain S3 requests for what is in the bucket, the testkit's consumer for what is in topics.
//! Each check adds what it found wrong to `violations` and goes on, so one run reports all.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::PREFIX;
use crate::raw_s3::RawS3;
use crate::workload::{Workload, FOREIGN_IN_PREFIX, FOREIGN_OUTSIDE};

/// A backup the API lists, with its manifest as read from the bucket.
pub struct ListedBackup {
    pub id: String,
    pub manifest: Value,
}

impl ListedBackup {
    fn parent(&self) -> Option<&str> {
        self.manifest["chain"]["parent_id"].as_str()
    }

    /// `(partition, relative file)` of every segment the manifest names.
    fn segments(&self) -> Vec<(Value, String)> {
        let mut out = Vec::new();
        for partition in self.manifest["partitions"].as_array().into_iter().flatten() {
            for segment in partition["segments"].as_array().into_iter().flatten() {
                let file = segment["file"].as_str().unwrap_or_default().to_owned();
                out.push((segment.clone(), file));
            }
        }
        out
    }
}

pub async fn foreign_objects(s3: &RawS3, violations: &mut Vec<String>) {
    for (key, body) in [FOREIGN_OUTSIDE, FOREIGN_IN_PREFIX] {
        match s3.get(key).await {
            Some(found) if found == body => {}
            Some(_) => violations.push(format!("foreign object {key} was changed")),
            None => violations.push(format!("foreign object {key} was deleted")),
        }
    }
}

/// Every backup the API lists: its manifest and every segment it names are in the bucket with
/// the size and SHA-256 the manifest records, and `verify` finds it valid.
pub async fn listed_backups(
    workload: &Workload<'_>,
    s3: &RawS3,
    violations: &mut Vec<String>,
) -> Vec<ListedBackup> {
    let (cluster, replica) = (workload.cluster, workload.live(0));
    if !workload.unsettled.is_empty() {
        violations.push(format!(
            "jobs still running 60 s after the workload: {:?}",
            workload.unsettled
        ));
    }
    let list = cluster.get(replica, "/api/kafka/backups").await;
    let mut listed = Vec::new();
    for entry in list["backups"].as_array().into_iter().flatten() {
        let id = entry["backup_id"].as_str().unwrap_or_default().to_owned();
        let Some(raw) = s3.get(&format!("{PREFIX}/{id}/manifest.json")).await else {
            violations.push(format!("listed backup {id} has no manifest in the bucket"));
            continue;
        };
        let manifest: Value = serde_json::from_slice(&raw).unwrap_or_default();
        let backup = ListedBackup { id, manifest };
        for (segment, file) in backup.segments() {
            let key = format!("{PREFIX}/{}/{file}", backup.id);
            let Some(bytes) = s3.get(&key).await else {
                violations.push(format!(
                    "listed backup {}: segment {key} is missing",
                    backup.id
                ));
                continue;
            };
            let sha = hex(&Sha256::digest(&bytes));
            if Some(bytes.len() as u64) != segment["size_bytes"].as_u64()
                || Some(sha.as_str()) != segment["sha256"].as_str()
            {
                violations.push(format!(
                    "listed backup {}: segment {key} differs from its manifest",
                    backup.id
                ));
            }
        }
        let path = format!("/api/kafka/backups/{}/verify", backup.id);
        let report: Value = match cluster.try_post(replica, &path, json!({})).await {
            Ok(resp) => resp.json().await.unwrap_or_default(),
            Err(e) => json!({"error": e.to_string()}),
        };
        if report["valid"] != true {
            violations.push(format!(
                "listed backup {} does not verify: {report}",
                backup.id
            ));
        }
        listed.push(backup);
    }
    listed
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Under the prefix only the listed backups' manifests and segments remain (and the foreign
/// object put there).
pub async fn nothing_unlisted(s3: &RawS3, listed: &[ListedBackup], violations: &mut Vec<String>) {
    let mut allowed: HashSet<String> = HashSet::from([FOREIGN_IN_PREFIX.0.to_owned()]);
    for backup in listed {
        allowed.insert(format!("{PREFIX}/{}/manifest.json", backup.id));
        for (_, file) in backup.segments() {
            allowed.insert(format!("{PREFIX}/{}/{file}", backup.id));
        }
    }
    let unlisted: Vec<String> = s3
        .list(&format!("{PREFIX}/"))
        .await
        .into_iter()
        .filter(|key| !allowed.contains(key))
        .collect();
    if !unlisted.is_empty() {
        let shown: Vec<&String> = unlisted.iter().take(20).collect();
        violations.push(format!(
            "{} object(s) under {PREFIX}/ belong to no listed backup after the sweep: {shown:?}",
            unlisted.len()
        ));
    }
}

/// `(partition, offset) -> value` of every record of `topic`.
async fn records_of(workload: &Workload<'_>, topic: &str) -> HashMap<(i32, i64), Vec<u8>> {
    workload
        .broker
        .consume_all(topic)
        .await
        .into_iter()
        .map(|r| ((r.partition, r.offset), r.value.unwrap_or_default()))
        .collect()
}

/// The values of `topic` that appear more than once.
fn repeated(values: &[Vec<u8>]) -> usize {
    let distinct: HashSet<&Vec<u8>> = values.iter().collect();
    values.len() - distinct.len()
}

/// Restores the workload started: no target holds a record twice or a record its source
/// never had; a completed one holds what it reported; of two at once into one topic, one ran.
pub async fn restores_of_the_workload(workload: &Workload<'_>, violations: &mut Vec<String>) {
    for (target, statuses) in &workload.pairs {
        if statuses.iter().filter(|s| **s == 202).count() > 1 {
            violations.push(format!(
                "two restores at once into {target} were both admitted: {statuses:?}"
            ));
        }
    }
    let mut sources: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    for topic in [&workload.scheduled_topic, &workload.manual_topic] {
        let values = records_of(workload, topic).await.into_values().collect();
        sources.insert(topic.clone(), values);
    }
    let (cluster, replica) = (workload.cluster, workload.live(0));
    for run in &workload.restores {
        let job = cluster
            .get(replica, &format!("/api/kafka/jobs/{}", run.job_id))
            .await;
        if workload.broker.partition_count(&run.target).await.is_none() {
            continue;
        }
        let copy: Vec<Vec<u8>> = workload
            .broker
            .consume_all(&run.target)
            .await
            .into_iter()
            .map(|r| r.value.unwrap_or_default())
            .collect();
        let twice = repeated(&copy);
        if twice > 0 {
            violations.push(format!(
                "restore {} of {} into {} holds {twice} record(s) twice (job {})",
                run.job_id, run.backup_id, run.target, job["state"]
            ));
        }
        let source = &sources[&run.source_topic];
        let foreign = copy.iter().filter(|v| !source.contains(*v)).count();
        if foreign > 0 {
            violations.push(format!(
                "restore into {} holds {foreign} record(s) its source never had",
                run.target
            ));
        }
        if job["state"] == "completed" && job["result"]["messages_restored"] != copy.len() as u64 {
            violations.push(format!(
                "restore {} reported {} records, {} holds {}",
                run.job_id,
                job["result"]["messages_restored"],
                run.target,
                copy.len()
            ));
        }
    }
}

/// Every chain's tip (a listed backup no listed backup continues) restored into a fresh topic
/// holds exactly the source records its links cover, from its oldest listed link on.
pub async fn chains_restore_exactly(
    workload: &Workload<'_>,
    listed: &[ListedBackup],
    violations: &mut Vec<String>,
) {
    let by_id: HashMap<&str, &ListedBackup> = listed.iter().map(|b| (b.id.as_str(), b)).collect();
    let continued: HashSet<&str> = listed.iter().filter_map(ListedBackup::parent).collect();
    let tips: Vec<&ListedBackup> = listed
        .iter()
        .filter(|b| !continued.contains(b.id.as_str()))
        .collect();
    let mut sources = HashMap::new();
    for topic in [&workload.scheduled_topic, &workload.manual_topic] {
        sources.insert(topic.clone(), records_of(workload, topic).await);
    }
    for batch in tips.chunks(4) {
        let restores = batch.iter().enumerate().map(|(i, tip)| {
            let target = workload.broker.unique_topic("chaos-chain");
            let body = json!({"backup_id": tip.id, "target_topic": target});
            let replica = workload.live(i);
            async move {
                let path = "/api/kafka/clusters/local/restore";
                let answer = workload.cluster.try_post(replica, path, body).await;
                (
                    tip,
                    target,
                    answer.map(|r| r.status().as_u16()).unwrap_or(0),
                )
            }
        });
        for (tip, target, status) in futures::future::join_all(restores).await {
            if status != 200 {
                violations.push(format!("restoring chain tip {} answered {status}", tip.id));
                continue;
            }
            let expected = chain_records(tip, &by_id, &sources);
            let got: Vec<(i32, Vec<u8>)> = workload
                .broker
                .consume_all(&target)
                .await
                .into_iter()
                .map(|r| (r.partition, r.value.unwrap_or_default()))
                .collect();
            if let Some(difference) = differences(&got, &expected) {
                violations.push(format!("chain tip {} {difference}", tip.id));
            }
        }
    }
}

/// How `got` differs from `expected` (both `(partition, value)`), if it does.
fn differences(got: &[(i32, Vec<u8>)], expected: &[(i32, Vec<u8>)]) -> Option<String> {
    let mut sorted = got.to_vec();
    sorted.sort();
    if sorted == expected {
        return None;
    }
    let want: BTreeSet<&(i32, Vec<u8>)> = expected.iter().collect();
    let have: BTreeSet<&(i32, Vec<u8>)> = got.iter().collect();
    Some(format!(
        "restored {} record(s) ({} distinct), its links hold {}: {} missing, {} not in its links",
        got.len(),
        have.len(),
        expected.len(),
        want.difference(&have).count(),
        have.difference(&want).count()
    ))
}

/// The source records the chain ending at `tip` covers, `(partition, value)`, sorted.
fn chain_records(
    tip: &ListedBackup,
    by_id: &HashMap<&str, &ListedBackup>,
    sources: &HashMap<String, HashMap<(i32, i64), Vec<u8>>>,
) -> Vec<(i32, Vec<u8>)> {
    let mut links = vec![tip];
    while let Some(parent) = links.last().and_then(|l| l.parent()) {
        match by_id.get(parent) {
            Some(link) if !links.iter().any(|l| l.id == link.id) => links.push(link),
            _ => break,
        }
    }
    let topic = tip.manifest["topic"]["name"].as_str().unwrap_or_default();
    let empty = HashMap::new();
    let source = sources.get(topic).unwrap_or(&empty);
    let mut out = Vec::new();
    for link in links {
        for partition in link.manifest["partitions"].as_array().into_iter().flatten() {
            let p = partition["partition"].as_i64().unwrap_or(-1) as i32;
            let start = partition["start_offset"].as_i64().unwrap_or(0);
            let end = partition["end_offset"].as_i64().unwrap_or(0);
            for offset in start..end {
                if let Some(value) = source.get(&(p, offset)) {
                    out.push((p, value.clone()));
                }
            }
        }
    }
    out.sort();
    out
}
