//! The listing's index of manifests on a real S3-compatible server (moto): two stores on one
//! bucket stand for two replicas. What one adds or deletes shows in the other's next listing,
//! a backup still being written never does, and each manifest is read once per process (a
//! listing GETs only the manifests it has not seen, or that changed).

mod common;

use std::sync::Arc;
use std::time::Duration;

use kvault_domain::{BackupId, CompressionType};
use kvault_storage::backend::object::{ObjectBackend, ObjectConfig};
use kvault_storage::{Store, StoreOptions};
use kvault_testkit::s3::{TestS3, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY};

fn store_on(server: &TestS3, bucket: &str) -> Store {
    let config = ObjectConfig {
        url: format!("s3://{bucket}/vault"),
        endpoint: Some(server.endpoint().to_owned()),
        region: Some("us-east-1".into()),
        allow_http: true,
        access_key_id: Some(S3_ACCESS_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET_ACCESS_KEY.into()),
        max_retries: 1,
        retry_timeout: Duration::from_secs(3),
        ..ObjectConfig::default()
    };
    let backend = ObjectBackend::connect(&config).unwrap();
    Store::on(Arc::new(backend), StoreOptions::default()).unwrap()
}

/// Writes and commits backup `name` (one partition, three records).
fn write(store: &Store, name: &str) {
    let writer = store
        .blocking_create(common::spec(name, CompressionType::None, 1))
        .unwrap();
    let mut pw = writer.partition(0).unwrap();
    for o in 0..3 {
        pw.append(&common::record(o)).unwrap();
    }
    let part = pw.finish(0, 3).unwrap();
    writer.commit(vec![part], chrono::Utc::now()).unwrap();
}

fn listed(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .blocking_list()
        .unwrap()
        .into_iter()
        .map(|m| m.backup_id)
        .collect();
    ids.sort();
    ids
}

/// Manifest GETs the server answered for `bucket` so far.
fn manifest_reads(server: &TestS3, bucket: &str) -> usize {
    server
        .requests_to(bucket)
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/manifest.json"))
        .count()
}

#[test]
fn listings_follow_other_replicas_and_read_each_manifest_once() {
    let server = TestS3::shared();
    let bucket = server.fresh_bucket("catalog");
    let (a, b) = (store_on(server, &bucket), store_on(server, &bucket));
    write(&a, "one");
    write(&a, "two");
    assert_eq!(listed(&a), ["one", "two"]);
    let read = manifest_reads(server, &bucket);
    assert_eq!(listed(&a), ["one", "two"]);
    assert_eq!(
        manifest_reads(server, &bucket),
        read,
        "a second listing reads no manifest it has read"
    );

    // The other replica adds one, deletes one, and has one still being written.
    write(&b, "three");
    b.blocking_delete(&BackupId::parse("one").unwrap()).unwrap();
    let unfinished = b
        .blocking_create(common::spec("four", CompressionType::None, 1))
        .unwrap();
    let mut pw = unfinished.partition(0).unwrap();
    pw.append(&common::record(0)).unwrap();
    let _part = pw.finish(0, 1).unwrap();
    // Counted from here: the other replica's delete reads the manifest it deletes.
    let read = manifest_reads(server, &bucket);
    assert_eq!(listed(&a), ["three", "two"]);
    assert_eq!(
        manifest_reads(server, &bucket),
        read + 1,
        "only the new manifest was read"
    );
    assert_eq!(listed(&b), ["three", "two"]);
    drop(unfinished);

    // A backup deleted and written again under the same id is read again.
    b.blocking_delete(&BackupId::parse("two").unwrap()).unwrap();
    write(&b, "two");
    let read = manifest_reads(server, &bucket);
    assert_eq!(listed(&a), ["three", "two"]);
    assert_eq!(manifest_reads(server, &bucket), read + 1);
}
